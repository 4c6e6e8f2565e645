"""SQLite store of scored predictions and their feedback, shared by all server workers.

One database file is opened by every gunicorn worker; each process (and thread) keeps
its own connection. The file is in WAL mode so readers (the /metrics scrape) never
block writers (/predict), writes take ``BEGIN IMMEDIATE`` so concurrent writers queue
on the busy timeout instead of failing on a lock upgrade, and every transaction is one
short statement batch. ``synchronous=NORMAL`` is durable across process crashes and
restarts (WAL), which is what a monitoring log needs; a power loss may drop the last
transactions.

Feature values are personal health data: they are stored here for drift checks and are
never written to log messages or exception texts. The file is created 0600 (its -wal and
-shm files inherit that mode) and a directory the log creates is 0700; ``secure_delete``
overwrites removed rows and a checkpoint after each retention pass truncates the WAL, so
deleted records do not linger in free pages or the journal. Retention runs on a timer in
every process (``run_retention_every``), not only when predictions arrive. The caller
decides what a record's ``features`` hold (the service can store reference-bin indices
instead of raw values: STROKE_MONITOR_STORE=binned). Each label keeps the name of the
credential that sent it (``labelled_by``); a file from before that column gains it when
opened.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stroke_risk.monitoring import log_queries
from stroke_risk.monitoring.log_queries import Dialect, Statement

if TYPE_CHECKING:
    from stroke_risk.monitoring.shared_figures import FileFigures

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prediction_id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    model_version TEXT NOT NULL,
    features TEXT NOT NULL,
    probability REAL NOT NULL,
    decision INTEGER NOT NULL,
    label INTEGER,
    labelled_at REAL,
    labelled_by TEXT
);
CREATE INDEX IF NOT EXISTS predictions_created_at ON predictions (created_at);
CREATE INDEX IF NOT EXISTS predictions_labelled ON predictions (seq) WHERE label IS NOT NULL;
CREATE INDEX IF NOT EXISTS predictions_version ON predictions (model_version, seq);
CREATE TABLE IF NOT EXISTS pending_batches (
    token TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
"""
# Columns added after the first release, with their definition: an older file gains them
# when opened (ALTER TABLE ... ADD COLUMN keeps every row; old labels have NULL).
ADDED_COLUMNS = {"labelled_by": "TEXT"}
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
SQLITE = Dialect(placeholder="?", predictions_table="predictions")
# A batch logged after its response shares this many leading hex digits of its ids.
BATCH_TOKEN_LENGTH = 16

DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0
# Retention is enforced once every this many recorded batches per process: a DELETE on
# an indexed column is cheap, but not free enough to run on every /predict.
DEFAULT_PRUNE_EVERY = 200


class PredictionLogError(Exception):
    """Base class of the store's own errors."""


class StoreUnavailableError(PredictionLogError):
    """The store could not be reached or refused a statement (the message names which)."""


class DuplicatePredictionError(PredictionLogError):
    """A prediction id was recorded twice (ids must be unique)."""


class FeedbackError(PredictionLogError, ValueError):
    """Feedback was refused; ``field`` names the offending request field."""

    field = "prediction_id"


class UnknownPredictionError(FeedbackError):
    """No prediction with this id is stored (never made, or removed by retention)."""


class DuplicateFeedbackError(FeedbackError):
    """This prediction already has a label; feedback is accepted once."""


class InvalidLabelError(FeedbackError):
    """The label is not the integer 0 or 1."""

    field = "stroke"


@dataclass(frozen=True)
class PredictionRecord:
    """One scored record as the app produced it."""

    prediction_id: str
    features: Mapping[str, Any]
    probability: float
    decision: bool
    model_version: str


@dataclass(frozen=True)
class LabelledPrediction:
    """A stored prediction with its feedback label."""

    prediction_id: str
    probability: float
    decision: bool
    label: int


@dataclass(frozen=True)
class Window:
    """The newest ``max_records`` rows and/or the rows younger than ``max_age_seconds``.

    Either bound may be None (unbounded); both None means every stored row.
    """

    max_records: int | None = 1000
    max_age_seconds: float | None = None


@dataclass(frozen=True)
class Retention:
    """How much history to keep: at most ``max_rows`` rows, none older than ``max_age_seconds``."""

    max_rows: int | None = 100_000
    max_age_seconds: float | None = 30 * 24 * 3600.0


def features_json(features: Mapping[str, Any]) -> str:
    """Compact JSON of a record with sorted keys; NaN and numpy scalars are handled.

    orjson writes NaN (and infinities, which validation excludes anyway) as null, so the
    JSON stays standard; it is ~5x faster than json.dumps, which matters when a batch of
    10,000 records is logged.
    """
    return orjson.dumps(features, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


def validate_label(label: Any) -> int:
    """Return the label as int 0/1; raise InvalidLabelError otherwise (bool is refused)."""
    if isinstance(label, bool) or not isinstance(label, int) or label not in (0, 1):
        raise InvalidLabelError(f"must be the integer 0 or 1, got {type(label).__name__}")
    return int(label)


def create_private_file(path: Path) -> None:
    """Create path 0600 (tighten an existing file to 0600) and missing directories 0700."""
    missing = [parent for parent in reversed(path.parents) if not parent.exists()]
    for directory in missing:
        directory.mkdir(mode=DIRECTORY_MODE, exist_ok=True)
        os.chmod(directory, DIRECTORY_MODE)  # mkdir's mode is filtered by the umask
    # Only a file that does not exist yet is opened here: closing any descriptor of a
    # database file drops this process's SQLite locks on it (POSIX advisory locks).
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
    if (os.stat(path).st_mode & 0o777) != FILE_MODE:
        os.chmod(path, FILE_MODE)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists() and (os.stat(companion).st_mode & 0o777) != FILE_MODE:
            os.chmod(companion, FILE_MODE)


class LogReads(ABC):
    """The read, window and label methods of both backends, on one set of statements.

    A backend names its Dialect and runs a statement: ``_rows`` as a read, ``_changed_rows``
    in a write transaction (returning the row count); everything else is written here once.
    """

    dialect: Dialect
    clock: Callable[[], float]

    @abstractmethod
    def _rows(self, statement: Statement) -> list[tuple[Any, ...]]:
        """The rows a read statement returns."""

    @abstractmethod
    def _changed_rows(self, statement: Statement) -> int:
        """How many rows a write statement changed, run in a transaction of its own."""

    def _window_rows(
        self, columns: Sequence[str], window: Window, *, labelled: bool, model_version: str | None
    ) -> list[tuple[Any, ...]]:
        created_since = (
            None if window.max_age_seconds is None else self.clock() - window.max_age_seconds
        )
        return self._rows(
            log_queries.window_rows(
                self.dialect,
                columns,
                labelled=labelled,
                model_version=model_version,
                max_records=window.max_records,
                created_since=created_since,
            )
        )

    def recent_features(
        self, window: Window, *, model_version: str | None = None
    ) -> list[dict[str, Any]]:
        """Feature records of the recent window, newest first (one model version if given)."""
        rows = self._window_rows(["features"], window, labelled=False, model_version=model_version)
        return [json.loads(features) for (features,) in rows]

    def recent_probabilities(
        self, window: Window, *, model_version: str | None = None
    ) -> list[float]:
        """Probabilities of the recent window, newest first (one model version if given)."""
        rows = self._window_rows(
            ["probability"], window, labelled=False, model_version=model_version
        )
        return [float(p) for (p,) in rows]

    def labelled_window(
        self, window: Window, *, model_version: str | None = None
    ) -> list[LabelledPrediction]:
        """Labelled predictions of the window (by prediction time), newest first."""
        rows = self._window_rows(
            ["prediction_id", "probability", "decision", "label"],
            window,
            labelled=True,
            model_version=model_version,
        )
        return [
            LabelledPrediction(
                prediction_id=pid, probability=float(p), decision=bool(d), label=int(y)
            )
            for pid, p, d, y in rows
        ]

    def _column_of_id(self, column: str, prediction_id: str) -> Any:
        rows = self._rows(log_queries.column_of_id(self.dialect, column, prediction_id))
        if not rows:
            raise UnknownPredictionError("no stored prediction has this id")
        return rows[0][0]

    def stored_label(self, prediction_id: str) -> int | None:
        """Return the id's label (None: stored, unlabelled); raise UnknownPredictionError.

        A read only: it takes no write lock, so unknown ids cost one indexed lookup.
        """
        label = self._column_of_id("label", prediction_id)
        return None if label is None else int(label)

    def labelled_by(self, prediction_id: str) -> str | None:
        """Return the name of the credential that labelled the prediction (None: none)."""
        name = self._column_of_id("labelled_by", prediction_id)
        return None if name is None else str(name)

    def record_feedback(
        self, prediction_id: str, label: Any, *, labelled_by: str | None = None
    ) -> int:
        """Attach the true label (0/1) to a stored prediction; return the label stored.

        labelled_by: the name of the credential that sent the label (kept with it).

        Raises InvalidLabelError, UnknownPredictionError or DuplicateFeedbackError. Unknown
        and already-labelled ids are found by a read, without the write lock; the update
        itself only sets a label that is still NULL, so two concurrent feedbacks for one
        id cannot both succeed.
        """
        value = validate_label(label)
        if self.stored_label(prediction_id) is not None:
            raise DuplicateFeedbackError("feedback for this prediction was already recorded")
        updated = self._changed_rows(
            log_queries.set_label_once(
                self.dialect, prediction_id, value, self.clock(), labelled_by
            )
        )
        if updated == 0:
            # Labelled (or removed by retention) between the read and the update.
            self.stored_label(prediction_id)
            raise DuplicateFeedbackError("feedback for this prediction was already recorded")
        return value

    def count(self) -> int:
        """Number of stored predictions."""
        return int(self._rows(log_queries.row_count(self.dialect))[0][0])

    def stored_ids(self) -> set[str]:
        """Every stored prediction id (tests and audits; not for the request path)."""
        return {pid for (pid,) in self._rows(log_queries.all_ids(self.dialect))}


class PredictionLog(LogReads):
    """The shared prediction/feedback store at ``path`` (created on first use).

    Safe to use from several processes and threads: connections are per process and
    thread and are reopened after a fork, so an instance created before gunicorn forks
    its workers still works in each worker.
    """

    dialect = SQLITE

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: Retention | None = None,
        busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        prune_every: int = DEFAULT_PRUNE_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.retention = retention or Retention()
        self.busy_timeout_seconds = busy_timeout_seconds
        self.prune_every = max(1, prune_every)
        self.clock = clock
        self._local = threading.local()
        self._batches_since_prune = 0
        self._counter_lock = threading.Lock()
        self._timer_interval: float | None = None
        self._checkpoint_due = False
        create_private_file(self.path)
        self._initialise()

    # --- connections ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_seconds,
            isolation_level=None,  # autocommit; transactions are explicit below
        )
        connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_seconds * 1000)}")
        connection.execute("PRAGMA synchronous = NORMAL")
        # Deleted rows are overwritten with zeros, not left in free pages.
        connection.execute("PRAGMA secure_delete = ON")
        return connection

    def _connection(self) -> sqlite3.Connection:
        # A connection inherited across fork must not be used by the child: reopen.
        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            self._local.connection = self._connect()
            self._local.pid = pid
        return self._local.connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT: never leave this thread's connection mid-transaction.
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _initialise(self) -> None:
        connection = self._connection()
        # Switching to WAL needs a brief exclusive lock; workers starting together retry.
        deadline = time.monotonic() + self.busy_timeout_seconds
        while True:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        with self._write() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            present = {row[1] for row in conn.execute("PRAGMA table_info(predictions)")}
            for column, definition in ADDED_COLUMNS.items():
                if column not in present:
                    conn.execute(f"ALTER TABLE predictions ADD COLUMN {column} {definition}")
        self.enforce_retention()

    def close(self) -> None:
        """Close this thread's connection (other threads' connections close on exit)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            connection.close()
        self._local = threading.local()

    # --- writes ---------------------------------------------------------------------

    def record_predictions(
        self, records: Sequence[PredictionRecord], *, pending_token: str | None = None
    ) -> None:
        """Insert a batch of scored records in one transaction.

        Raises DuplicatePredictionError if an id is already stored (nothing is inserted).
        pending_token: the batch's mark_pending token, cleared in the same transaction.
        The row cap holds when the transaction commits: the oldest rows beyond
        ``retention.max_rows`` are deleted in it (one range delete on the primary key).
        The age limit is enforced every ``prune_every`` batches and by the timer.
        """
        if not records:
            return
        self._insert(records, self.clock(), pending_token=pending_token, replay=False)
        if self._prune_due():
            self.enforce_retention()

    def replay_predictions(self, records: Sequence[PredictionRecord], created_at: float) -> int:
        """Insert records journalled at created_at, skipping ids already stored; return
        how many were new (a journal may be replayed twice, or after its batch committed)."""
        if not records:
            return 0
        return self._insert(records, created_at, pending_token=None, replay=True)

    def _insert(
        self,
        records: Sequence[PredictionRecord],
        created_at: float,
        *,
        pending_token: str | None,
        replay: bool,
    ) -> int:
        rows = [
            (
                r.prediction_id,
                created_at,
                r.model_version,
                features_json(r.features),
                float(r.probability),
                int(bool(r.decision)),
            )
            for r in records
        ]
        verb = "INSERT OR IGNORE" if replay else "INSERT"
        try:
            with self._write() as connection:
                before = connection.total_changes
                connection.executemany(
                    f"{verb} INTO predictions (prediction_id, created_at, model_version,"
                    " features, probability, decision) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                inserted = connection.total_changes - before
                if pending_token is not None:
                    connection.execute(
                        "DELETE FROM pending_batches WHERE token = ?", (pending_token,)
                    )
                if self.retention.max_rows is not None:
                    capped = connection.execute(
                        "DELETE FROM predictions WHERE seq <= "
                        "(SELECT MAX(seq) FROM predictions) - ?",
                        (self.retention.max_rows,),
                    ).rowcount
                    if capped:
                        # The retention pass checkpoints (a checkpoint per insert is
                        # too dear); secure_delete has already zeroed the rows' pages.
                        self._checkpoint_due = True
        except sqlite3.IntegrityError:
            raise DuplicatePredictionError(
                "a prediction id in this batch is already stored"
            ) from None
        return inserted

    def mark_pending(self, token: str, seconds: float) -> None:
        """Note that a batch whose ids start with token will be recorded within seconds.

        Feedback for an id of a pending batch waits for it (see is_pending); any other
        unknown id is refused at once.
        """
        with self._write() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO pending_batches (token, expires_at) VALUES (?, ?)",
                (token, self.clock() + seconds),
            )

    def is_pending(self, prediction_id: str) -> bool:
        """Return whether the id belongs to a batch marked pending and not yet recorded."""
        row = (
            self._connection()
            .execute(
                "SELECT 1 FROM pending_batches WHERE token = ? AND expires_at > ?",
                (prediction_id[:BATCH_TOKEN_LENGTH], self.clock()),
            )
            .fetchone()
        )
        return row is not None

    def _prune_due(self) -> bool:
        with self._counter_lock:
            self._batches_since_prune += 1
            if self._batches_since_prune >= self.prune_every:
                self._batches_since_prune = 0
                return True
            return False

    def enforce_retention(self) -> int:
        """Delete rows beyond the retention limits; return how many were deleted.

        After a deletion the WAL is checkpointed and truncated, so the removed rows
        (overwritten by secure_delete) leave no copy in the journal either.
        """
        deleted = 0
        with self._write() as connection:
            if self.retention.max_age_seconds is not None:
                cutoff = self.clock() - self.retention.max_age_seconds
                deleted += connection.execute(
                    "DELETE FROM predictions WHERE created_at < ?", (cutoff,)
                ).rowcount
            if self.retention.max_rows is not None:
                # seq only grows, so the newest max_rows rows have the largest seq values;
                # gaps (rolled-back inserts) only make this keep slightly fewer rows.
                deleted += connection.execute(
                    "DELETE FROM predictions WHERE seq <= (SELECT MAX(seq) FROM predictions) - ?",
                    (self.retention.max_rows,),
                ).rowcount
            connection.execute("DELETE FROM pending_batches WHERE expires_at < ?", (self.clock(),))
        if deleted or self._checkpoint_due:
            self._checkpoint_due = False
            self.checkpoint()
        return deleted

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate it (best effort under readers)."""
        self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def purge(self) -> int:
        """Delete every stored prediction, overwrite the free space and truncate the WAL.

        Returns how many rows were deleted. The file keeps its schema and mode.
        """
        with self._write() as connection:
            deleted = connection.execute("DELETE FROM predictions").rowcount
            connection.execute("DELETE FROM pending_batches")
        self.checkpoint()
        self._connection().execute("VACUUM")
        self.checkpoint()
        return deleted

    def run_retention_every(self, seconds: float, *, start_now: bool = True) -> None:
        """Enforce retention every seconds on a daemon thread, even when no request comes.

        The thread is started here (unless start_now is False, e.g. in a server's master
        process that forks its workers) and again in every forked child, where threads do
        not survive the fork.
        """
        first = self._timer_interval is None
        self._timer_interval = seconds
        if first:
            os.register_at_fork(after_in_child=self._start_timer)
        if start_now:
            self._start_timer()

    def _start_timer(self) -> None:
        interval = self._timer_interval
        if interval is None:
            return
        self._timer_stop = threading.Event()
        stop = self._timer_stop

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.enforce_retention()
                except sqlite3.Error as error:
                    logger.warning("prediction log retention failed (%s)", type(error).__name__)

        threading.Thread(target=loop, name="prediction-log-retention", daemon=True).start()

    def stop_retention_timer(self) -> None:
        """Stop this process's retention thread (it also stops when the process exits)."""
        self._timer_interval = None
        stop = getattr(self, "_timer_stop", None)
        if stop is not None:
            stop.set()

    # --- reads (the queries are LogReads') -------------------------------------------

    def _rows(self, statement: Statement) -> list[tuple[Any, ...]]:
        return self._connection().execute(statement.text, statement.parameters).fetchall()

    def _changed_rows(self, statement: Statement) -> int:
        with self._write() as connection:
            return connection.execute(statement.text, statement.parameters).rowcount

    def shared_figures(self, kind: str, model_version: str) -> FileFigures:
        """The whole-service figures of one kind and model version, in a file next to the log."""
        from stroke_risk.monitoring.shared_figures import FileFigures, shared_figures_path

        return FileFigures(shared_figures_path(self.path, model_version, kind))
