"""A per-process journal of buffered predictions: what a worker answered survives its death.

The service buffers small requests' records and writes them to the prediction log many
per transaction (app/prediction_writer.py). A worker killed with SIGKILL took its buffer
with it: answered predictions whose later labels got 404. With the journal, every record
is appended to a file of its process with one write(2) *before* the answer is sent; the
kernel keeps what write(2) returned for, whatever happens to the process next (a power
loss is another matter: no fsync, the OS's page cache may lose the last seconds).

Files. A process appends to one *generation* file ``<pid>-<random>-<n>.jsonl`` in the
journal folder (0700; files 0600: they hold patient data until replayed), holding an
exclusive flock on it from before it has its name (created as ``.new``, locked, then
renamed). A flush *seals* the generation (a new one takes the appends) and deletes the
sealed file once its records are committed. A file nobody holds the lock of belongs to a
dead process (or a flush that failed): ``replay_orphans`` inserts its records, skipping
ids already stored, and deletes it. Replays are idempotent, so two processes replaying
the same file, or a replay after the batch did commit, store each record once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stroke_risk.monitoring.prediction_log import (
    DIRECTORY_MODE,
    FILE_MODE,
    PredictionRecord,
)

logger = logging.getLogger(__name__)

SUFFIX = ".jsonl"


@dataclass(frozen=True)
class Generation:
    """One journal file of this process: its descriptor (holding the flock) and path."""

    descriptor: int
    path: Path


def encode(records: Sequence[PredictionRecord], created_at: float) -> bytes:
    """The journal lines of records (one JSON array per record, newline-terminated)."""
    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    return b"".join(
        orjson.dumps(
            [
                created_at,
                r.prediction_id,
                r.model_version,
                dict(r.features),
                float(r.probability),
                bool(r.decision),
            ],
            option=options,
        )
        for r in records
    )


def decode(data: bytes) -> dict[float, list[PredictionRecord]]:
    """Records of journal bytes by the time they were journalled; unreadable lines (none
    are expected: a write(2) is whole once it returns) are skipped."""
    by_time: dict[float, list[PredictionRecord]] = {}
    for line in data.splitlines():
        try:
            created_at, prediction_id, version, features, probability, decision = orjson.loads(line)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            continue
        record = PredictionRecord(
            str(prediction_id), features, float(probability), bool(decision), str(version)
        )
        by_time.setdefault(float(created_at), []).append(record)
    return by_time


def write_all(descriptor: int, data: bytes) -> None:
    """write(2) until every byte is in the file (a regular file takes it in one call)."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


class PredictionJournal:
    """This process's journal in directory (created 0700); safe across fork and threads.

    Callers keep the journal and their buffer in step: ``append`` under the same lock as
    the buffer's extend, ``seal`` under the same lock as the buffer's swap.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        os.chmod(self.directory, DIRECTORY_MODE)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._current: Generation | None = None
        self._name = ""
        self._count = 0

    def _new_generation(self) -> Generation:
        self._count += 1
        stem = f"{self._name}-{self._count}"
        temporary = self.directory / f"{stem}.new"
        descriptor = os.open(
            temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND, FILE_MODE
        )
        # Locked before it has a journal name: a replayer never sees it unlocked.
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self.directory / f"{stem}{SUFFIX}"
        os.rename(temporary, path)
        return Generation(descriptor, path)

    def _generation(self) -> Generation:
        if self._pid != os.getpid() or self._current is None:
            # A forked child never writes to its parent's file (nor holds its lock).
            self._pid = os.getpid()
            self._name = f"{self._pid}-{secrets.token_hex(4)}"
            self._count = 0
            self._current = self._new_generation()
        return self._current

    def append(self, records: Sequence[PredictionRecord], created_at: float) -> None:
        """Append records with one write(2); returns once the kernel has them."""
        data = encode(records, created_at)
        with self._lock:
            write_all(self._generation().descriptor, data)

    def append_separately(
        self, records: Sequence[PredictionRecord], created_at: float
    ) -> Generation:
        """Write records to a generation of their own (a large batch logged after its
        answer); discard or release it once they are committed or not."""
        data = encode(records, created_at)
        with self._lock:
            self._generation()  # this process's file names
            generation = self._new_generation()
        write_all(generation.descriptor, data)
        return generation

    def seal(self) -> Generation:
        """Start a new generation; return the previous one (still locked) to discard or
        release once its records are committed or not."""
        with self._lock:
            sealed = self._generation()
            self._current = self._new_generation()
            return sealed

    @staticmethod
    def discard(sealed: Generation) -> None:
        """Delete a sealed generation whose records are in the log."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sealed.path)
        os.close(sealed.descriptor)

    @staticmethod
    def release(sealed: Generation) -> None:
        """Unlock a sealed generation whose records could not be stored: replay takes it."""
        os.close(sealed.descriptor)


def replay_orphans(directory: str | os.PathLike[str], store: Any) -> int:
    """Store the records of every journal file no live process holds; return how many
    were new. Each file is deleted once its records are stored; a store error leaves it
    for the next replay (and propagates)."""
    folder = Path(directory)
    if not folder.is_dir():
        return 0
    stored = 0
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # replayed and deleted by another process meanwhile
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive (or another replayer has it)
            if not path.exists():
                continue  # the replayer before us finished it
            with os.fdopen(os.dup(descriptor), "rb") as handle:
                data = handle.read()
            for created_at, records in decode(data).items():
                stored += store.replay_predictions(records, created_at)
            os.unlink(path)
            if stored:
                logger.info("prediction journal: %d record(s) replayed", stored)
        finally:
            os.close(descriptor)
    return stored
