"""The shared SQLite prediction log: windows, feedback, retention, persistence, processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from stroke_risk.data.schema import EXAMPLE_RECORD
from stroke_risk.monitoring.prediction_log import (
    DuplicateFeedbackError,
    DuplicatePredictionError,
    InvalidLabelError,
    PredictionLog,
    PredictionRecord,
    Retention,
    UnknownPredictionError,
    Window,
)

RECORD: dict[str, Any] = {**EXAMPLE_RECORD, "gender": "Female", "bmi": None}


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def prediction(pid: str, probability: float = 0.1, **features: Any) -> PredictionRecord:
    return PredictionRecord(
        prediction_id=pid,
        features={**RECORD, **features},
        probability=probability,
        decision=probability >= 0.05,
        model_version="v1",
    )


def test_records_and_reads_the_recent_window_newest_first(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    log.record_predictions([prediction("a", age=1.0), prediction("b", age=2.0)])
    log.record_predictions([prediction("c", age=3.0)])
    assert log.count() == 3
    ages = [r["age"] for r in log.recent_features(Window(max_records=2, max_age_seconds=None))]
    assert ages == [3.0, 2.0]
    assert log.recent_features(Window(None, None))[0] == {**RECORD, "age": 3.0}


def test_window_by_age(tmp_path: Path) -> None:
    clock = FakeClock()
    log = PredictionLog(tmp_path / "log.sqlite", clock=clock)
    log.record_predictions([prediction("old")])
    clock.now += 100
    log.record_predictions([prediction("new")])
    window = Window(max_records=None, max_age_seconds=50)
    assert len(log.recent_features(window)) == 1
    assert len(log.recent_features(Window(max_records=None, max_age_seconds=500))) == 2


def test_nan_features_are_stored_as_null(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    log.record_predictions([prediction("a", bmi=float("nan"))])
    assert log.recent_features(Window())[0]["bmi"] is None


def test_feedback_is_accepted_once(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    log.record_predictions([prediction("a", 0.9), prediction("b", 0.01)])
    assert log.record_feedback("a", 1) == 1
    with pytest.raises(DuplicateFeedbackError):
        log.record_feedback("a", 0)
    with pytest.raises(UnknownPredictionError):
        log.record_feedback("nope", 1)
    labelled = log.labelled_window(Window())
    assert [(p.prediction_id, p.label, p.probability, p.decision) for p in labelled] == [
        ("a", 1, 0.9, True)
    ]


@pytest.mark.parametrize("label", [2, -1, "1", 1.0, True, None])
def test_bad_labels_are_refused(tmp_path: Path, label: Any) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    log.record_predictions([prediction("a")])
    with pytest.raises(InvalidLabelError) as error:
        log.record_feedback("a", label)
    assert error.value.field == "stroke"
    assert log.labelled_window(Window()) == []


def test_labelled_window_limits(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    log.record_predictions([prediction(str(i)) for i in range(10)])
    for i in range(0, 10, 2):
        log.record_feedback(str(i), i % 4 // 2)
    ids = [p.prediction_id for p in log.labelled_window(Window(max_records=3))]
    assert ids == ["8", "6", "4"]


def test_duplicate_prediction_id_inserts_nothing_of_the_batch(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    log.record_predictions([prediction("a")])
    with pytest.raises(DuplicatePredictionError):
        log.record_predictions([prediction("b"), prediction("a")])
    assert log.count() == 1


def test_retention_by_row_count(tmp_path: Path) -> None:
    log = PredictionLog(
        tmp_path / "log.sqlite",
        retention=Retention(max_rows=5, max_age_seconds=None),
        prune_every=1,
    )
    for i in range(12):
        log.record_predictions([prediction(str(i))])
    assert log.count() == 5
    with pytest.raises(UnknownPredictionError):
        log.record_feedback("0", 1)  # pruned
    log.record_feedback("11", 1)


def test_the_row_cap_holds_at_insert_time(tmp_path: Path) -> None:
    """12 batches of 1,000 under a 1,000-row cap keep 1,000 rows after every batch, with
    no retention pass (the timer and the amortised pass used to be the only limit)."""
    log = PredictionLog(tmp_path / "log.sqlite", retention=Retention(1000, None))
    for batch in range(12):
        log.record_predictions([prediction(f"{batch}-{i}") for i in range(1000)])
        assert log.count() == 1000
    assert log.stored_label("11-999") is None
    with pytest.raises(UnknownPredictionError):
        log.stored_label("10-999")


def test_age_retention_is_amortised(tmp_path: Path) -> None:
    clock = FakeClock()
    log = PredictionLog(
        tmp_path / "log.sqlite",
        retention=Retention(max_rows=None, max_age_seconds=60),
        prune_every=4,
        clock=clock,
    )
    log.record_predictions([prediction("old")])
    clock.now += 61
    for i in range(2):
        log.record_predictions([prediction(str(i))])
    assert log.stored_label("old") is None  # kept: only every 4th batch pays for the DELETE
    log.record_predictions([prediction("3")])
    assert log.count() == 3
    with pytest.raises(UnknownPredictionError):
        log.stored_label("old")


def test_a_label_keeps_the_credential_that_sent_it(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    log.record_predictions([prediction("a"), prediction("b")])
    log.record_feedback("a", 1, labelled_by="ward-7")
    assert (log.labelled_by("a"), log.labelled_by("b")) == ("ward-7", None)


def test_a_log_from_before_labelled_by_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE predictions (seq INTEGER PRIMARY KEY AUTOINCREMENT, prediction_id"
            " TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, model_version TEXT NOT NULL,"
            " features TEXT NOT NULL, probability REAL NOT NULL, decision INTEGER NOT NULL,"
            " label INTEGER, labelled_at REAL)"
        )
        old.execute(
            "INSERT INTO predictions (prediction_id, created_at, model_version, features,"
            " probability, decision, label) VALUES ('old', 9e9, 'v1', '{}', 0.2, 1, 0)"
        )
    log = PredictionLog(path)
    assert log.labelled_by("old") is None and log.stored_label("old") == 0
    log.record_predictions([prediction("new")])
    log.record_feedback("new", 1, labelled_by="ward-7")
    assert log.labelled_by("new") == "ward-7"


def test_retention_by_age(tmp_path: Path) -> None:
    clock = FakeClock()
    log = PredictionLog(
        tmp_path / "log.sqlite",
        retention=Retention(max_rows=None, max_age_seconds=60),
        prune_every=1,
        clock=clock,
    )
    log.record_predictions([prediction("old")])
    clock.now += 61
    log.record_predictions([prediction("new")])
    assert log.count() == 1
    assert log.recent_features(Window(None, None))[0] == RECORD


def test_persists_across_reopen_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "log.sqlite"
    first = PredictionLog(path)
    first.record_predictions([prediction("a")])
    first.record_feedback("a", 0)
    first.close()
    second = PredictionLog(path)
    assert second.count() == 1
    assert second.labelled_window(Window())[0].label == 0
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _write_batches(path: str, worker: int, batches: int) -> None:
    log = PredictionLog(path, prune_every=10)
    for batch in range(batches):
        log.record_predictions(
            [prediction(f"w{worker}-{batch}-{i}", probability=0.01 * i) for i in range(3)]
        )
        if batch % 5 == 0:
            log.record_feedback(f"w{worker}-{batch}-0", worker % 2)


@pytest.mark.integration
def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    PredictionLog(path)  # create the schema first, as the app does at startup
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_batches, args=(path, w, 150)) for w in range(2)]
    for worker in workers:
        worker.start()
    reader = PredictionLog(path)
    # Read while they write: WAL readers never block or see partial batches.
    while any(w.is_alive() for w in workers):
        assert len(reader.recent_features(Window(None, None))) % 3 == 0
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert reader.count() == 2 * 150 * 3
    assert len(reader.labelled_window(Window(None, None))) == 2 * 30


def _use_inherited_log(log: PredictionLog, queue: Any) -> None:
    log.record_predictions([prediction("from-child")])
    queue.put(log.count())


@pytest.mark.integration
def test_instance_created_before_fork_works_in_the_child(tmp_path: Path) -> None:
    # gunicorn --preload creates the app (and the log) before forking its workers.
    log = PredictionLog(tmp_path / "log.sqlite")
    log.record_predictions([prediction("from-parent")])
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_use_inherited_log, args=(log, queue))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == 2
    assert log.count() == 2
