"""The prediction log on PostgreSQL: the SQLite log's schema and contract, for several hosts.

Selected by one service setting (STROKE_MONITOR_DATABASE_URL); SQLite stays the embedded
default (stroke_risk.monitoring.prediction_log). Same tables and columns, same methods,
same errors, so the service and the tests use either through ``PredictionStore``
(stroke_risk.monitoring.log_backend).

Least privilege. Two roles: an *owner* that runs ``setup`` once (creates the
``prediction_log`` schema, its tables and the service role's grants -- the only DDL), and
the *service* role the workers connect as, which may SELECT, INSERT, UPDATE and DELETE
rows of these tables and nothing else: no CREATE, ALTER, DROP or TRUNCATE, no TEMP
tables, no VACUUM; setup also revokes PUBLIC's CONNECT on the log's database. The service
never runs DDL: a missing schema stops it with one line naming the setup command.

Deleted rows on PostgreSQL. A DELETE only marks tuples dead; their bytes stay in the
table's pages until VACUUM prunes them (autovacuum does so on its own schedule) and in the
write-ahead log until its segments are recycled. The service role cannot VACUUM (that
needs the owner), so retention deletes and autovacuum reclaims; ``purge`` (run as the
owner) deletes every row, then VACUUM FULL rewrites the tables into new files and drops
the old ones, and a CHECKPOINT lets old WAL segments be recycled. Encrypted storage is
what protects freed disk blocks; see the README's patient-data section.

The whole-service figures (drift, live performance) are rows of ``shared_figures``, one
per figure kind and model version, recomputed under a session advisory lock that the
server releases when the holder's connection ends (a dead host never leaves it stuck):
every instance on every host exports the same numbers.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import orjson
import psycopg
from psycopg import sql

from stroke_risk.monitoring.live import Figure
from stroke_risk.monitoring.log_queries import Dialect, Statement
from stroke_risk.monitoring.prediction_log import (
    BATCH_TOKEN_LENGTH,
    DEFAULT_PRUNE_EVERY,
    DuplicatePredictionError,
    LogReads,
    PredictionLogError,
    PredictionRecord,
    Retention,
    StoreUnavailableError,
    features_json,
)
from stroke_risk.monitoring.shared_figures import figures_document

logger = logging.getLogger(__name__)

SCHEMA_NAME = "prediction_log"
TABLES = ("predictions", "pending_batches", "shared_figures")
POSTGRESQL = Dialect(placeholder="%s", predictions_table=f"{SCHEMA_NAME}.predictions")
# The SQLite log's tables with PostgreSQL types, plus the whole-service figures (which the
# SQLite log keeps in files next to it, under flock).
SCHEMA_STATEMENTS = (
    "CREATE SCHEMA IF NOT EXISTS prediction_log",
    """CREATE TABLE IF NOT EXISTS prediction_log.predictions (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        prediction_id TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL,
        model_version TEXT NOT NULL,
        features TEXT NOT NULL,
        probability DOUBLE PRECISION NOT NULL,
        decision INTEGER NOT NULL,
        label INTEGER,
        labelled_at DOUBLE PRECISION,
        labelled_by TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS predictions_created_at ON prediction_log.predictions (created_at)",
    "CREATE INDEX IF NOT EXISTS predictions_labelled"
    " ON prediction_log.predictions (seq) WHERE label IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS predictions_version"
    " ON prediction_log.predictions (model_version, seq)",
    """CREATE TABLE IF NOT EXISTS prediction_log.pending_batches (
        token TEXT PRIMARY KEY,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS prediction_log.shared_figures (
        kind TEXT NOT NULL,
        model_version TEXT NOT NULL,
        computed_at DOUBLE PRECISION NOT NULL,
        figures TEXT NOT NULL,
        PRIMARY KEY (kind, model_version)
    )""",
)
CONNECT_TIMEOUT_SECONDS = 5
# Every statement of the service is one indexed read or a short batch: one that waits
# longer than this (a lock held by a stuck session) fails instead of stalling a worker.
STATEMENT_TIMEOUT_MS = 10_000
# Idle connections a process keeps open (more are opened under load and closed after).
MAX_IDLE_CONNECTIONS = 4


def connect(database_url: str, **options: Any) -> psycopg.Connection[Any]:
    """A libpq connection (password from PGPASSWORD or the pgpass file, never the URL log)."""
    return psycopg.connect(
        database_url, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True, **options
    )


def cooperative_waits() -> None:
    """Under gevent, make psycopg wait through the patched select().

    psycopg picks its wait function when imported: the service's gunicorn master imports
    it before gevent patches the forked workers, so it keeps the blocking C wait, and
    every query (a flush's COMMIT waits for the WAL to reach the disk) would stall every
    request of the worker. Called in each process before its first connection.
    """
    from psycopg import waiting

    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("select"):
        waiting.wait = waiting.wait_select


def describe_url(database_url: str) -> str:
    """host:port/database as user, for messages (no password, even if the URL has one)."""
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    return (
        f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        f" as '{info.get('user', '')}'"
    )


# --- setup: the owner's one-time DDL -------------------------------------------------------


def setup_schema(owner_url: str, service_role: str) -> None:
    """Create the schema and tables (idempotent) and grant the service role row access only.

    Run as the owner role (it owns the schema and can VACUUM). Also revokes the database's
    default PUBLIC rights (CONNECT, TEMP), so only roles granted CONNECT reach it.
    """
    role = sql.Identifier(service_role)
    with connect(owner_url) as connection, connection.transaction():
        for statement in SCHEMA_STATEMENTS:
            connection.execute(statement)
        database = sql.Identifier(connection.info.dbname)
        connection.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database))
        connection.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"))
        connection.execute(sql.SQL("REVOKE ALL ON SCHEMA prediction_log FROM PUBLIC"))
        connection.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role))
        connection.execute(sql.SQL("GRANT USAGE ON SCHEMA prediction_log TO {}").format(role))
        for table in TABLES:
            connection.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
                    sql.Identifier(SCHEMA_NAME, table), role
                )
            )


def create_service_role(owner_url: str, service_role: str, password: str) -> None:
    """Create (or reset) a login role with no attribute beyond LOGIN: no superuser, no
    CREATEDB, no CREATEROLE, no replication, no row-security bypass."""
    with connect(owner_url) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (service_role,)
        ).fetchone()
        verb = "ALTER" if exists else "CREATE"
        connection.execute(
            sql.SQL(
                verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                " NOBYPASSRLS NOINHERIT PASSWORD {}"
            ).format(sql.Identifier(service_role), sql.Literal(password))
        )


def purge(owner_url: str) -> int:
    """Delete every stored prediction as the owner, rewrite the tables (VACUUM FULL: new
    files, the old ones dropped) and CHECKPOINT; return how many rows were deleted."""
    with connect(owner_url) as connection:
        deleted = connection.execute("DELETE FROM prediction_log.predictions").rowcount
        connection.execute("DELETE FROM prediction_log.pending_batches")
        connection.execute("DELETE FROM prediction_log.shared_figures")
        for table in TABLES:
            connection.execute(sql.SQL("VACUUM FULL {}").format(sql.Identifier(SCHEMA_NAME, table)))
        connection.execute("CHECKPOINT")
    return deleted


# --- the service's store -------------------------------------------------------------------


class PostgresPredictionLog(LogReads):
    """The shared prediction/feedback store in a PostgreSQL database (schema made by setup).

    Same contract as stroke_risk.monitoring.prediction_log.PredictionLog. Connections come
    from a small pool per process (a forked child opens its own); every
    database error surfaces as StoreUnavailableError (never the driver's exception).
    """

    dialect = POSTGRESQL

    def __init__(
        self,
        database_url: str,
        *,
        retention: Retention | None = None,
        prune_every: int = DEFAULT_PRUNE_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database_url = database_url
        self.where = describe_url(database_url)
        self.retention = retention or Retention()
        self.prune_every = max(1, prune_every)
        self.clock = clock
        self._pool_lock = threading.Lock()
        self._pool_pid = os.getpid()
        cooperative_waits()
        self._idle: list[psycopg.Connection[Any]] = []
        self._batches_since_prune = 0
        self._counter_lock = threading.Lock()
        self._timer_interval: float | None = None
        with self._session() as connection:
            present = connection.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = ANY(%s)",
                (SCHEMA_NAME, list(TABLES)),
            ).fetchone()
        if present is None or present[0] != len(TABLES):
            raise StoreUnavailableError(
                f"PostgreSQL {self.where}: the prediction_log schema is missing; run "
                "`python -m stroke_risk.commands.prediction_log_db setup` as its owner first"
            )
        self.enforce_retention()

    # --- connections ----------------------------------------------------------------

    def _open(self) -> psycopg.Connection[Any]:
        return connect(
            self.database_url,
            options=f"-c search_path={SCHEMA_NAME} -c statement_timeout={STATEMENT_TIMEOUT_MS}",
        )

    def _acquire(self) -> psycopg.Connection[Any]:
        # A pool per process, not a connection per thread: under gevent every request is a
        # greenlet with its own "thread-local" (a connection each would cost a login per
        # request). Connections inherited across a fork are never used by the child.
        with self._pool_lock:
            if self._pool_pid != os.getpid():
                self._pool_pid, self._idle = os.getpid(), []
                cooperative_waits()
            if self._idle:
                return self._idle.pop()
        return self._open()

    def _release(self, connection: psycopg.Connection[Any]) -> None:
        if connection.closed or connection.broken:
            return
        with self._pool_lock:
            if self._pool_pid == os.getpid() and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for one operation; a driver error becomes
        StoreUnavailableError (a broken connection is dropped, the next call reconnects)."""
        connection: psycopg.Connection[Any] | None = None
        try:
            connection = self._acquire()
            yield connection
        except psycopg.errors.UniqueViolation:
            raise
        except psycopg.Error as error:
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            raise StoreUnavailableError(
                f"PostgreSQL {self.where}: {type(error).__name__} {reason}"
            ) from None
        finally:
            if connection is not None:
                self._release(connection)

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        with self._session() as connection, connection.transaction():
            yield connection

    def close(self) -> None:
        """Close this process's idle connections (the server then holds none of ours)."""
        with self._pool_lock:
            idle, self._idle = (self._idle if self._pool_pid == os.getpid() else []), []
        for connection in idle:
            connection.close()

    # --- writes ---------------------------------------------------------------------

    def record_predictions(
        self, records: Sequence[PredictionRecord], *, pending_token: str | None = None
    ) -> None:
        """Insert a batch in one transaction (see PredictionLog.record_predictions)."""
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
        statement = (
            "INSERT INTO predictions (prediction_id, created_at, model_version, features,"
            " probability, decision) SELECT * FROM unnest("
            "%s::text[], %s::float8[], %s::text[], %s::text[], %s::float8[], %s::int[])"
            + (" ON CONFLICT (prediction_id) DO NOTHING" if replay else "")
        )
        columns = [list(column) for column in zip(*rows, strict=True)]
        try:
            with self._write() as connection:
                # One statement for the whole batch (unnest of arrays): one round trip.
                inserted = connection.execute(statement, columns).rowcount
                if pending_token is not None:
                    connection.execute(
                        "DELETE FROM pending_batches WHERE token = %s", (pending_token,)
                    )
                if self.retention.max_rows is not None:
                    connection.execute(
                        "DELETE FROM predictions WHERE seq <= "
                        "(SELECT MAX(seq) FROM predictions) - %s",
                        (self.retention.max_rows,),
                    )
        except psycopg.errors.UniqueViolation:
            raise DuplicatePredictionError(
                "a prediction id in this batch is already stored"
            ) from None
        return max(inserted, 0)

    def mark_pending(self, token: str, seconds: float) -> None:
        """Note that a batch whose ids start with token will be recorded within seconds."""
        with self._write() as connection:
            connection.execute(
                "INSERT INTO pending_batches (token, expires_at) VALUES (%s, %s)"
                " ON CONFLICT (token) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                (token, self.clock() + seconds),
            )

    def is_pending(self, prediction_id: str) -> bool:
        """Return whether the id belongs to a batch marked pending and not yet recorded."""
        with self._session() as connection:
            row = connection.execute(
                "SELECT 1 FROM pending_batches WHERE token = %s AND expires_at > %s",
                (prediction_id[:BATCH_TOKEN_LENGTH], self.clock()),
            ).fetchone()
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

        The deleted tuples stay in the table's pages until (auto)vacuum prunes them: the
        service role cannot VACUUM (module docstring).
        """
        deleted = 0
        with self._write() as connection:
            if self.retention.max_age_seconds is not None:
                cutoff = self.clock() - self.retention.max_age_seconds
                deleted += connection.execute(
                    "DELETE FROM predictions WHERE created_at < %s", (cutoff,)
                ).rowcount
            if self.retention.max_rows is not None:
                deleted += connection.execute(
                    "DELETE FROM predictions WHERE seq <= (SELECT MAX(seq) FROM predictions) - %s",
                    (self.retention.max_rows,),
                ).rowcount
            connection.execute("DELETE FROM pending_batches WHERE expires_at < %s", (self.clock(),))
        return deleted

    def run_retention_every(self, seconds: float, *, start_now: bool = True) -> None:
        """Enforce retention every seconds on a daemon thread (see PredictionLog)."""
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
                except PredictionLogError as error:
                    logger.warning("prediction log retention failed (%s)", type(error).__name__)

        threading.Thread(target=loop, name="prediction-log-retention", daemon=True).start()

    def stop_retention_timer(self) -> None:
        """Stop this process's retention thread."""
        self._timer_interval = None
        stop = getattr(self, "_timer_stop", None)
        if stop is not None:
            stop.set()

    # --- reads (the queries are LogReads') -------------------------------------------

    def _rows(self, statement: Statement) -> list[tuple[Any, ...]]:
        with self._session() as connection:
            # The text is composed from log_queries' fixed strings, never from input.
            return connection.execute(statement.text, statement.parameters).fetchall()

    def _changed_rows(self, statement: Statement) -> int:
        with self._write() as connection:
            return connection.execute(statement.text, statement.parameters).rowcount

    def shared_figures(self, kind: str, model_version: str) -> DatabaseFigures:
        """The whole-service figures of one kind and model version, in this database."""
        return DatabaseFigures(self, kind, model_version)


class DatabaseFigures:
    """One row of shared_figures: the SharedFigures contract (read, write, lease) for
    instances on several hosts. The lease is a session advisory lock: released by the
    server when the holder's connection closes, so a crashed holder never keeps it."""

    def __init__(self, log: PostgresPredictionLog, kind: str, model_version: str) -> None:
        self.log = log
        self.kind = kind
        self.model_version = model_version
        self._lock_key = f"{SCHEMA_NAME}.shared_figures:{kind}:{model_version}"

    def read(self) -> dict[str, Any] | None:
        """Return the stored document ({"computed_at", "figures"}), None if absent."""
        try:
            with self.log._session() as connection:
                row = connection.execute(
                    "SELECT computed_at, figures FROM shared_figures"
                    " WHERE kind = %s AND model_version = %s",
                    (self.kind, self.model_version),
                ).fetchone()
        except StoreUnavailableError:
            return None
        if row is None:
            return None
        return {"computed_at": float(row[0]), "figures": orjson.loads(row[1])}

    def write(self, computed_at: float, figures: Sequence[Figure]) -> None:
        """Replace the stored figures."""
        document = figures_document(computed_at, figures)
        with self.log._session() as connection:
            connection.execute(
                "INSERT INTO shared_figures (kind, model_version, computed_at, figures)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (kind, model_version) DO UPDATE"
                " SET computed_at = EXCLUDED.computed_at, figures = EXCLUDED.figures",
                (
                    self.kind,
                    self.model_version,
                    computed_at,
                    orjson.dumps(document["figures"]).decode(),
                ),
            )

    @contextmanager
    def lease(self, *, wait: bool) -> Iterator[bool]:
        """Hold the figures' advisory lock while inside; yields False when another session
        holds it and not wait, or the database is unreachable."""
        try:
            connection = self.log._acquire()
        except psycopg.Error:
            yield False
            return
        held = False
        try:
            # The lock belongs to this session: the connection is kept until the unlock.
            try:
                if wait:
                    connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (self._lock_key,))
                    held = True
                else:
                    row = connection.execute(
                        "SELECT pg_try_advisory_lock(hashtext(%s))", (self._lock_key,)
                    ).fetchone()
                    held = bool(row and row[0])
            except psycopg.Error:
                held = False
            yield held
        finally:
            if held:
                # A lost connection released the lock with it.
                with suppress(psycopg.Error):
                    connection.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self._lock_key,))
            self.log._release(connection)
