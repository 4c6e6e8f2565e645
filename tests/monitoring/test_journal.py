"""The per-worker journal: what a killed process appended is replayed once, a live
process's journal is never taken, and committed generations leave nothing behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from stroke_risk.monitoring.journal import PredictionJournal, replay_orphans
from stroke_risk.monitoring.prediction_log import PredictionLog, PredictionRecord


def record(pid: str) -> PredictionRecord:
    return PredictionRecord(pid, {"age": 61.0, "bmi": None}, 0.3, True, "v1")


def test_a_killed_process_journal_is_replayed_once(tmp_path: Path) -> None:
    journal = PredictionJournal(tmp_path / "journal")
    log = PredictionLog(tmp_path / "log.sqlite")
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - killed before it could report anything
        journal.append([record("a"), record("b")], 1000.0)
        os.write(write, b"x")
        signal.pause()
    os.read(read, 1)  # the child has appended and waits to be killed
    # Alive: its file is locked, so nobody replays it.
    assert replay_orphans(journal.directory, log) == 0 and log.count() == 0
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    assert replay_orphans(journal.directory, log) == 2
    assert log.stored_ids() == {"a", "b"}
    assert not list(journal.directory.glob("*.jsonl"))
    assert replay_orphans(journal.directory, log) == 0


def test_own_journal_is_not_replayed_and_a_committed_generation_is_deleted(
    tmp_path: Path,
) -> None:
    journal = PredictionJournal(tmp_path / "journal")
    log = PredictionLog(tmp_path / "log.sqlite")
    journal.append([record("a")], 1000.0)
    assert replay_orphans(journal.directory, log) == 0  # this process holds it
    sealed = journal.seal()
    journal.append([record("b")], 1001.0)
    log.record_predictions([record("a")])
    PredictionJournal.discard(sealed)
    assert not sealed.path.exists()
    failed = journal.seal()  # b's flush failed: released for replay
    PredictionJournal.release(failed)
    assert replay_orphans(journal.directory, log) == 1
    assert log.stored_ids() == {"a", "b"}
    assert [p.name for p in journal.directory.iterdir()] == [journal.seal().path.name]


def test_journal_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        journal = PredictionJournal(tmp_path / "journal")
        journal.append([record("a")], 1.0)
    finally:
        os.umask(old)
    assert os.stat(journal.directory).st_mode & 0o777 == 0o700
    assert {os.stat(p).st_mode & 0o777 for p in journal.directory.iterdir()} == {0o600}


def writer_for(tmp_path: Path, log: PredictionLog) -> Any:
    from app.prediction_writer import PredictionLogWriter

    return PredictionLogWriter(
        log,
        model_version="v1",
        flush_seconds=5.0,
        journal=PredictionJournal(tmp_path / "journal"),
    )


def large_batch(count: int) -> tuple[list[dict[str, Any]], list[float], list[bool], list[str]]:
    token = "abcdef0123456789"
    ids = [f"{token}{index:016x}" for index in range(count)]
    return [{"age": 70.0}] * count, [0.4] * count, [True] * count, ids


def test_a_large_batch_journalled_before_its_answer_survives_the_worker(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    arguments = large_batch(150)
    child = os.fork()
    if child == 0:  # pragma: no cover - dies between the answer and the deferred logging
        writer_for(tmp_path, log).defer(*arguments)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(child, 0)
    assert log.count() == 0
    assert replay_orphans(tmp_path / "journal", log) == 150
    assert log.stored_ids() == set(arguments[3])


def test_a_large_batch_logged_after_its_answer_leaves_no_journal(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    writer = writer_for(tmp_path, log)
    arguments = large_batch(150)
    writer.defer(*arguments)
    assert log.is_pending(arguments[3][0])
    assert writer.on_predictions(*arguments)
    assert log.stored_ids() == set(arguments[3]) and not log.is_pending(arguments[3][0])
    journalled = b"".join(p.read_bytes() for p in (tmp_path / "journal").glob("*.jsonl"))
    assert arguments[3][0].encode() not in journalled
