"""Prediction ids: UUIDv7s whose first digits tell when they were issued.

The time in an id lets /feedback (app/feedback.py) refuse at once an unknown id too old
to be waiting in a worker's log buffer.
"""

from __future__ import annotations

import os
import time

# Prediction ids start with the time they were issued: 12 hex digits of Unix milliseconds.
ID_TIME_DIGITS = 12


_RANDOM_POOL_BYTES = 4096
_random_pool: list[str] = [""]


def _reset_random_pool() -> None:
    _random_pool[0] = ""  # a forked worker must not reuse its parent's bytes


os.register_at_fork(after_in_child=_reset_random_pool)


def random_hex(digits: int) -> str:
    """Return digits random hex digits from os.urandom.

    Small requests are served from a per-process pool read 4 KiB at a time (one
    getrandom call per ~400 ids instead of one per request); the pool is emptied in a
    forked child, so workers never share random bits.
    """
    if digits > _RANDOM_POOL_BYTES:
        return os.urandom((digits + 1) // 2).hex()[:digits]
    pool = _random_pool[0]
    if len(pool) < digits:
        pool = os.urandom(_RANDOM_POOL_BYTES).hex()
    _random_pool[0] = pool[digits:]
    return pool[:digits]


def new_prediction_ids(count: int) -> list[str]:
    """Return count UUIDv7s as 32 hex digits: issue time in ms (12 digits), then random bits.

    Because an id tells when it was issued, feedback for an unknown id that is too old to
    be waiting in a worker's log buffer is refused at once (app/feedback.py). One record
    gets 74 random bits. The records of a batch share their first 16 hex digits (time,
    version and 12 random bits: the batch token that a prediction log logging the batch
    after the response marks pending) and differ in 62 random bits.
    """
    token = f"{time.time_ns() // 1_000_000:012x}"[-ID_TIME_DIGITS:] + "7" + random_hex(3)
    if count == 1:
        return [token + _variant_tail(random_hex(16))]
    text = random_hex(16 * count)
    return [token + _variant_tail(text[start : start + 16]) for start in range(0, 16 * count, 16)]


def _variant_tail(digits: str) -> str:
    """Return 16 random hex digits with the RFC 4122 variant bits (first digit 8-b)."""
    return "89ab"[int(digits[0], 16) & 3] + digits[1:]


def prediction_id_age_seconds(prediction_id: str) -> float | None:
    """Return how long ago an id of new_prediction_ids was issued; None if it is not one."""
    issued = prediction_id[:ID_TIME_DIGITS]
    if len(prediction_id) != 32 or not all(c in "0123456789abcdef" for c in prediction_id):
        return None
    return time.time() - int(issued, 16) / 1000
