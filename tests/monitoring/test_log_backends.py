"""The prediction log's contract on both backends, and what only PostgreSQL has to prove.

Every contract test runs against the embedded SQLite log and a real PostgreSQL (the
session's server, tests/postgres_server.py; a fresh database per test, connected as the
least-privileged service role). The PostgreSQL-only tests check the role can do nothing
but read and write rows, that a missing schema is one line naming the setup command, and
that purge leaves no copy of a record in the table's files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stroke_risk.monitoring.live import Figure
from stroke_risk.monitoring.log_backend import PredictionStore, open_prediction_log
from stroke_risk.monitoring.prediction_log import (
    DuplicateFeedbackError,
    DuplicatePredictionError,
    InvalidLabelError,
    PredictionRecord,
    Retention,
    StoreUnavailableError,
    UnknownPredictionError,
    Window,
)
from tests.postgres_server import PostgresServer

MARKER = "zz-marker-patient-7f3a"


def prediction(pid: str, version: str = "v1", **features: Any) -> PredictionRecord:
    return PredictionRecord(pid, {"age": 50.0, **features}, 0.25, False, version)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


OpenStore = Callable[..., PredictionStore]


# The PostgreSQL case starts the session's server: an integration test (make check leaves it out).
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """open_store(**options) -> a store on this test's backend (the same log every call)."""
    opened: list[PredictionStore] = []
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        _, service_url = server.new_prediction_log()

    def open_one(**options: Any) -> PredictionStore:
        if request.param == "postgresql":
            from stroke_risk.monitoring.postgres_log import PostgresPredictionLog

            store: PredictionStore = PostgresPredictionLog(service_url, **options)
        else:
            from stroke_risk.monitoring.prediction_log import PredictionLog

            store = PredictionLog(tmp_path / "log.sqlite", **options)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def test_window_feedback_and_who_labelled(open_store: OpenStore) -> None:
    log = open_store()
    log.record_predictions([prediction(f"p{i}", age=float(i)) for i in range(5)])
    assert [r["age"] for r in log.recent_features(Window(3))] == [4.0, 3.0, 2.0]
    assert log.stored_label("p1") is None
    assert log.record_feedback("p1", 1, labelled_by="clinic-a") == 1
    assert log.labelled_by("p1") == "clinic-a"
    labelled = log.labelled_window(Window(None))
    assert [(p.prediction_id, p.label) for p in labelled] == [("p1", 1)]
    with pytest.raises(DuplicateFeedbackError):
        log.record_feedback("p1", 0)
    with pytest.raises(UnknownPredictionError):
        log.record_feedback("nope", 0)
    with pytest.raises(InvalidLabelError):
        log.record_feedback("p2", True)
    assert log.count() == 5


def test_a_duplicate_id_inserts_nothing_of_its_batch(open_store: OpenStore) -> None:
    log = open_store()
    log.record_predictions([prediction("a")])
    with pytest.raises(DuplicatePredictionError):
        log.record_predictions([prediction("b"), prediction("a")])
    assert log.stored_ids() == {"a"}


def test_replay_skips_stored_ids_and_keeps_the_journal_time(open_store: OpenStore) -> None:
    clock = Clock()
    log = open_store(clock=clock, retention=Retention(max_rows=None, max_age_seconds=100))
    log.record_predictions([prediction("a")])
    assert log.replay_predictions([prediction("a"), prediction("b")], clock.now - 50) == 1
    assert log.replay_predictions([prediction("a"), prediction("b")], clock.now - 50) == 0
    assert log.stored_ids() == {"a", "b"}
    clock.now += 60  # b was journalled 110 s ago, a stored 60 s ago
    log.enforce_retention()
    assert log.stored_ids() == {"a"}


def test_retention_by_rows_and_age_and_the_timer(open_store: OpenStore) -> None:
    clock = Clock()
    log = open_store(clock=clock, retention=Retention(max_rows=3, max_age_seconds=10))
    log.record_predictions([prediction(f"p{i}") for i in range(5)])
    assert log.stored_ids() == {"p2", "p3", "p4"}  # the cap holds at commit
    clock.now += 11
    log.record_predictions([prediction("new")])
    log.run_retention_every(0.05)
    try:
        deadline = clock.now
        import time

        end = time.monotonic() + 10
        while log.count() != 1 and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        log.stop_retention_timer()
    assert log.stored_ids() == {"new"}, deadline


def test_pending_batches_expire(open_store: OpenStore) -> None:
    clock = Clock()
    log = open_store(clock=clock)
    token = "0123456789abcdef"
    log.mark_pending(token, 2.0)
    assert log.is_pending(token + "0000")
    assert not log.is_pending("f" * 32)
    clock.now += 3
    assert not log.is_pending(token + "0000")


def test_windows_are_per_model_version(open_store: OpenStore) -> None:
    log = open_store()
    log.record_predictions([prediction("a", "v1"), prediction("b", "v2")])
    assert log.recent_probabilities(Window(None), model_version="v2") == [0.25]
    assert len(log.recent_probabilities(Window(None))) == 2


def test_windows_bound_by_age_records_version_and_label(open_store: OpenStore) -> None:
    clock = Clock()
    log = open_store(clock=clock, retention=Retention(max_rows=None, max_age_seconds=None))
    for i in range(6):  # p0 .. p5, 10 s apart; odd ones scored by v1, even ones by v2
        log.record_predictions([prediction(f"p{i}", "v1" if i % 2 else "v2", age=float(i))])
        clock.now += 10
    for pid in ("p1", "p2", "p4", "p5"):
        log.record_feedback(pid, 1 if pid == "p4" else 0)
    # now = p0 + 60 s: p3 is exactly 30 s old and a 30 s window keeps it (>=).
    assert [r["age"] for r in log.recent_features(Window(None, 30))] == [5.0, 4.0, 3.0]
    assert [r["age"] for r in log.recent_features(Window(2, 30))] == [5.0, 4.0]
    assert [r["age"] for r in log.recent_features(Window(None, 30), model_version="v1")] == [
        5.0,
        3.0,
    ]
    assert log.recent_probabilities(Window(None, 5)) == []
    assert [p.prediction_id for p in log.labelled_window(Window(None, 30))] == ["p5", "p4"]
    assert [
        (p.prediction_id, p.label, p.decision)
        for p in log.labelled_window(Window(1, None), model_version="v2")
    ] == [("p4", 1, False)]
    assert [p.prediction_id for p in log.labelled_window(Window(None, None))] == [
        "p5",
        "p4",
        "p2",
        "p1",
    ]


def test_shared_figures_one_writer_at_a_time_and_read_by_all(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    store_a = first.shared_figures("figures", "v1")
    store_b = second.shared_figures("figures", "v1")
    assert store_b.read() is None
    figures = [Figure("stroke_feature_psi", 0.5, (("feature", "age"),))]
    with store_a.lease(wait=False) as held:
        assert held
        with store_b.lease(wait=False) as other:
            assert not other  # another process (instance, host) is computing
        store_a.write(123.0, figures)
    document = store_b.read()
    assert document is not None and document["computed_at"] == 123.0
    from stroke_risk.monitoring.shared_figures import stored_figures

    assert stored_figures(document) == figures
    with store_b.lease(wait=False) as held:
        assert held  # released by the first
    assert first.shared_figures("figures", "v2").read() is None


def test_a_store_made_before_fork_works_in_the_child(open_store: OpenStore) -> None:
    log = open_store()
    log.record_predictions([prediction("parent")])
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's outcome is its exit status
        try:
            log.record_predictions([prediction("child")])
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log.record_predictions([prediction("parent-again")])
    assert log.stored_ids() == {"parent", "child", "parent-again"}


# --- PostgreSQL only ------------------------------------------------------------------------


def test_the_service_role_reads_and_writes_rows_and_nothing_else(
    postgres_server: PostgresServer,
) -> None:
    _, service_url = postgres_server.new_prediction_log()
    forbidden = [
        "CREATE TABLE prediction_log.extra (x int)",
        "CREATE TABLE public.extra (x int)",
        "CREATE TEMP TABLE scratch (x int)",
        "ALTER TABLE prediction_log.predictions ADD COLUMN extra int",
        "DROP TABLE prediction_log.pending_batches",
        "TRUNCATE prediction_log.predictions",
        "CREATE SCHEMA mine",
        "VACUUM prediction_log.predictions",
        "CREATE ROLE another",
    ]
    with psycopg.connect(service_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO prediction_log.predictions (prediction_id, created_at, model_version,"
            " features, probability, decision) VALUES ('x', 0, 'v', '{}', 0.1, 0)"
        )
        connection.execute("UPDATE prediction_log.predictions SET label = 1")
        connection.execute("DELETE FROM prediction_log.predictions")
        refused = []
        notices: list[str] = []
        connection.add_notice_handler(lambda notice: notices.append(notice.message_primary))
        for statement in forbidden:
            notices.clear()
            try:
                connection.execute(statement)
                # VACUUM by a non-owner is skipped with a warning, not an error.
                refused.append(any("skipping" in n or "permission" in n for n in notices))
            except psycopg.errors.InsufficientPrivilege:
                refused.append(True)
        assert dict(zip(forbidden, refused, strict=True)) == {s: True for s in forbidden}
    # The log's database admits only roles granted CONNECT (setup revoked PUBLIC's).
    from stroke_risk.monitoring.postgres_log import create_service_role

    create_service_role(postgres_server.url("postgres", postgres_server.owner), "other", "pw")
    other_url = service_url.replace("stroke_service", "other")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(other_url, password="pw").close()


def test_a_database_without_the_schema_is_one_line_naming_setup(
    postgres_server: PostgresServer,
) -> None:
    database = postgres_server.new_database()
    url = postgres_server.url(database, postgres_server.owner)
    with pytest.raises(StoreUnavailableError) as missing:
        open_prediction_log(path="unused", database_url=url)
    message = str(missing.value)
    assert "\n" not in message and "prediction_log_db setup" in message and database in message


def test_an_unreachable_database_is_a_store_error_without_the_password(
    postgres_server: PostgresServer,
) -> None:
    from stroke_risk.ports import free_port

    url = f"postgresql://someone:s3cret-pw@127.0.0.1:{free_port()}/db"
    with pytest.raises(StoreUnavailableError) as failed:
        open_prediction_log(path="unused", database_url=url)
    assert "s3cret-pw" not in str(failed.value) and "127.0.0.1" in str(failed.value)


def test_purge_leaves_no_copy_in_the_table_files(postgres_server: PostgresServer) -> None:
    from stroke_risk.monitoring.postgres_log import PostgresPredictionLog, purge

    owner_url, service_url = postgres_server.new_prediction_log()
    log = PostgresPredictionLog(service_url)
    log.record_predictions(
        [prediction(f"p{i}", work_type=MARKER) for i in range(20)]
        + [prediction(f"q{i}") for i in range(5)]
    )
    log.close()

    def table_file() -> Path:
        with psycopg.connect(owner_url, autocommit=True) as connection:
            connection.execute("CHECKPOINT")  # dirty pages reach the file
            data = connection.execute("SHOW data_directory").fetchone()
            relation = connection.execute(
                "SELECT pg_relation_filepath('prediction_log.predictions')"
            ).fetchone()
        assert data is not None and relation is not None
        return Path(data[0]) / relation[0]

    with_rows = table_file()
    assert MARKER.encode() in with_rows.read_bytes()
    with psycopg.connect(owner_url, autocommit=True) as connection:
        connection.execute("DELETE FROM prediction_log.predictions WHERE prediction_id LIKE 'p%'")
    # A DELETE alone leaves the tuples' bytes in the file (what the README warns about).
    assert MARKER.encode() in table_file().read_bytes()
    assert purge(owner_url) == 5
    rewritten = table_file()
    assert rewritten != with_rows and not with_rows.exists()
    assert MARKER.encode() not in rewritten.read_bytes()
