"""The buffered writer of scored records to the prediction log, one per worker.

PredictionLogWriter is the prediction callback live monitoring installs
(app/monitoring.py): small requests' records are buffered per worker and written every
STROKE_MONITOR_FLUSH_SECONDS in one transaction (a transaction per request costs more
than scoring the record), large batches in their own transaction after the response;
with STROKE_MONITOR_STORE=binned only reference-bin indices and categories are kept,
never the raw numbers. A store failure is logged without feature values and never
fails a prediction.

Durability (STROKE_MONITOR_JOURNAL, on by default): a buffered request's records are
appended to this worker's journal (stroke_risk/monitoring/journal.py, one write(2))
before its answer is sent, and the journal file of a worker that died is replayed by
whichever process's flusher finds it first (the restarted worker, a sibling, the next
start), so no answered prediction is missing from the log after a worker crash.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from app.service_state import DEFERRED_CALLBACK_MIN_RECORDS
from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.monitoring.journal import Generation, PredictionJournal, replay_orphans
from stroke_risk.monitoring.live import bin_record
from stroke_risk.monitoring.log_backend import STORE_ERRORS, PredictionStore
from stroke_risk.monitoring.prediction_log import (
    BATCH_TOKEN_LENGTH,
    PredictionLogError,
    PredictionRecord,
)

logger = logging.getLogger(__name__)

# What a replay of a dead worker's journal, or a deferred batch, may raise; logged, not served.
JOURNAL_REPLAY_ERRORS: tuple[type[Exception], ...] = (*STORE_ERRORS, OSError)
DEFERRED_LOGGING_ERRORS: tuple[type[Exception], ...] = (
    *STORE_ERRORS,
    PredictionLogError,
    ValueError,
    TypeError,
)

# A large /predict batch is logged just after its response is sent (app/factory.py): it
# is marked pending this long, and feedback for one of its ids waits for it up to this
# long (app/feedback.py).
FEEDBACK_GRACE_SECONDS = 2.0
# Each flusher looks for dead workers' journals this often (and once when it starts).
REPLAY_SECONDS = 1.0


class PredictionLogWriter:
    """The prediction callback: writes each request's scored records to the prediction log.

    Callable as ``writer(records, probabilities, decisions, ids)`` (app/factory.py's
    prediction callbacks, app/service_state.py CALLBACKS_KEY); ``defer(ids)`` is called
    before a large batch's response is sent and its logging deferred, so feedback for
    those ids waits instead of failing.

    With ``flush_seconds`` > 0, requests of fewer than DEFERRED_CALLBACK_MIN_RECORDS
    records are buffered in this process and written by a background thread (a greenlet
    under gevent) every flush_seconds, many requests per transaction; ``flush()`` writes
    the buffer now (the collector and /feedback call it before reading; gunicorn's
    worker_exit hook calls flush_all()). With a ``journal``, buffered records are also
    appended to it before the answer, and a killed worker's records are replayed from
    its journal (module docstring); without one, a worker killed with SIGKILL loses its
    buffer (at most flush_seconds of records). Otherwise each request is written in its
    own transaction before the answer.
    """

    def __init__(
        self,
        store: PredictionStore,
        *,
        model_version: str,
        reference_profile: Mapping[str, Any] | None = None,
        binned: bool = False,
        flush_seconds: float = 0.0,
        journal: PredictionJournal | None = None,
        clock: Any = time.time,
    ) -> None:
        self.store = store
        self.journal = journal
        self.clock = clock
        self.model_version = model_version
        self.reference_profile = reference_profile
        self.binned = binned
        self.flush_seconds = flush_seconds
        self._buffer: list[PredictionRecord] = []
        self._buffer_lock = threading.Lock()
        self._flusher_pid: int | None = None
        # Large batches journalled by defer(), by token, until logged after their answer.
        self._deferred: dict[str, tuple[list[PredictionRecord], Generation]] = {}
        _WRITERS.add(self)

    def defer(
        self,
        records: Sequence[Mapping[str, Any]],
        probabilities: Sequence[float],
        decisions: Sequence[bool],
        prediction_ids: Sequence[str],
    ) -> None:
        """Before a large batch's answer: mark it pending (its ids share their first 16
        hex digits) and, with a journal, journal it in a file of its own, so a worker
        killed before the batch is logged (after the answer) loses none of it."""
        token = prediction_ids[0][:BATCH_TOKEN_LENGTH]
        try:
            self.store.mark_pending(token, FEEDBACK_GRACE_SECONDS)
        except STORE_ERRORS as error:
            logger.warning("live monitoring: batch not marked pending (%s)", type(error).__name__)
        if self.journal is None:
            return
        self._ensure_flusher()  # its replays also cover this batch's journal
        batch = self._records(records, probabilities, decisions, prediction_ids, None)
        try:
            generation = self.journal.append_separately(batch, self.clock())
        except (OSError, ValueError, TypeError) as error:
            logger.warning("prediction journal: append failed (%s)", type(error).__name__)
            return
        with self._buffer_lock:
            self._deferred[token] = (batch, generation)

    def _records(
        self,
        records: Sequence[Mapping[str, Any]],
        probabilities: Sequence[float],
        decisions: Sequence[bool],
        prediction_ids: Sequence[str],
        model_version: str | None,
    ) -> list[PredictionRecord]:
        lengths = {len(records), len(probabilities), len(decisions), len(prediction_ids)}
        if len(lengths) != 1:
            raise ValueError(
                "records, probabilities, decisions and prediction_ids differ in length"
            )
        version = model_version or self.model_version
        profile = self.reference_profile
        return [
            PredictionRecord(
                prediction_id=prediction_id,
                features=(
                    bin_record(profile, record)
                    if self.binned and profile is not None
                    else {name: record.get(name) for name in FEATURE_NAMES}
                ),
                probability=float(probability),
                decision=bool(decision),
                model_version=version,
            )
            for record, probability, decision, prediction_id in zip(
                records, probabilities, decisions, prediction_ids, strict=True
            )
        ]

    def on_predictions(
        self,
        records: Sequence[Mapping[str, Any]],
        probabilities: Sequence[float],
        decisions: Sequence[bool],
        prediction_ids: Sequence[str],
        model_version: str | None = None,
    ) -> bool:
        """Record one request's scored records in one transaction; True if stored.

        A store failure is logged (never with feature values) and returns False instead of
        failing the prediction. Unequal list lengths are a caller bug: ValueError.
        """
        token = prediction_ids[0][:BATCH_TOKEN_LENGTH] if prediction_ids else ""
        with self._buffer_lock:
            deferred = self._deferred.pop(token, None) if len(prediction_ids) > 1 else None
        if deferred is not None:
            batch, generation = deferred  # built and journalled by defer()
            stored = self._store(batch, token)
            (PredictionJournal.discard if stored else PredictionJournal.release)(generation)
            return stored
        batch = self._records(records, probabilities, decisions, prediction_ids, model_version)
        if self.flush_seconds > 0 and len(batch) < DEFERRED_CALLBACK_MIN_RECORDS:
            self._ensure_flusher()
            with self._buffer_lock:
                if self.journal is not None:
                    try:
                        self.journal.append(batch, self.clock())
                    except (OSError, ValueError, TypeError) as error:
                        # The record is still buffered; only its crash safety is lost.
                        logger.warning(
                            "prediction journal: append failed (%s)", type(error).__name__
                        )
                self._buffer.extend(batch)
            return True
        return self._store(batch, token if len(batch) > 1 else None)

    __call__ = on_predictions

    def buffered(self) -> int:
        """Return how many records this process holds that are not in the log yet."""
        return len(self._buffer)

    def holds(self, prediction_id: str) -> bool:
        """Return whether this process's buffer holds the prediction (not logged yet)."""
        with self._buffer_lock:
            return any(record.prediction_id == prediction_id for record in self._buffer)

    def flush(self) -> bool:
        """Write this process's buffered records in one transaction; True unless it failed.

        Their journal generation is deleted once they are committed; after a failure it is
        unlocked instead, so the next replay stores them.
        """
        with self._buffer_lock:
            batch, self._buffer = self._buffer, []
            sealed = self.journal.seal() if self.journal is not None and batch else None
        if not batch:
            return True
        stored = self._store(batch, None)
        if sealed is not None:
            if stored:
                PredictionJournal.discard(sealed)
            else:
                PredictionJournal.release(sealed)
        return stored

    def replay(self) -> int:
        """Store the records of dead processes' journals; return how many were new."""
        if self.journal is None:
            return 0
        try:
            return replay_orphans(self.journal.directory, self.store)
        except JOURNAL_REPLAY_ERRORS as error:
            logger.warning("prediction journal: replay failed (%s)", type(error).__name__)
            return 0

    def _ensure_flusher(self) -> None:
        """Start this process's flusher (threads do not survive gunicorn's fork)."""
        if self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()
        reference = weakref.ref(self)
        interval = self.flush_seconds

        def loop() -> None:
            replayed_at = 0.0
            while True:
                writer = reference()
                if writer is None:
                    return
                if time.monotonic() - replayed_at >= REPLAY_SECONDS:
                    replayed_at = time.monotonic()
                    writer.replay()
                del writer
                time.sleep(interval)
                writer = reference()
                if writer is None:
                    return
                writer.flush()
                del writer

        threading.Thread(target=loop, name="prediction-log-flush", daemon=True).start()

    def _store(self, batch: list[PredictionRecord], token: str | None) -> bool:
        try:
            self.store.record_predictions(batch, pending_token=token)
        except DEFERRED_LOGGING_ERRORS as error:
            # ValueError/TypeError: feature values that are not JSON (e.g. infinity).
            logger.warning(
                "live monitoring: %d prediction(s) not recorded (%s)",
                len(batch),
                type(error).__name__,
            )
            return False
        return True


# Every writer of this process, for flush_all (gunicorn's worker_exit hook).
_WRITERS: weakref.WeakSet[PredictionLogWriter] = weakref.WeakSet()


def flush_all() -> None:
    """Write the buffered records of every writer in this process (at worker exit)."""
    for writer in list(_WRITERS):
        writer.flush()
