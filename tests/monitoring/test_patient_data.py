"""Patient data in the prediction log: file modes, secure deletion, retention timer, binning,
and feedback that never waits on the write lock for an unknown id."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, Counter

from app.feedback import FEEDBACK_KEY, FeedbackState, feedback_blueprint
from app.monitoring import install_monitoring
from app.prediction_writer import PredictionLogWriter
from app.settings import Settings
from stroke_risk.monitoring.drift import compute_drift
from stroke_risk.monitoring.prediction_log import PredictionLog, PredictionRecord, Retention, Window

MARKER = "zz-marker-patient-7f3a"


def prediction(pid: str, **features: Any) -> PredictionRecord:
    return PredictionRecord(pid, {"age": 50.0, **features}, 0.1, False, "v1")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_log_is_private_to_its_owner(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a typical umask: files would be world-readable
    try:
        path = tmp_path / "new" / "dir" / "log.sqlite"
        log = PredictionLog(path)
        log.record_predictions([prediction("a")])
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            assert mode(companion) == 0o600
    # An existing file with a loose mode is tightened when opened.
    loose = tmp_path / "loose.sqlite"
    PredictionLog(loose).close()
    os.chmod(loose, 0o644)
    PredictionLog(loose).close()
    assert mode(loose) == 0o600


def file_bytes(path: Path) -> bytes:
    data = b""
    for suffix in ("", "-wal"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            data += candidate.read_bytes()
    return data


def test_rows_removed_by_retention_leave_no_trace_in_the_files(tmp_path: Path) -> None:
    now = [1_000_000.0]
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path, retention=Retention(None, 60.0), clock=lambda: now[0])
    log.record_predictions([prediction(f"old-{i}", smoking_status=MARKER) for i in range(50)])
    assert MARKER.encode() in file_bytes(path)
    now[0] += 120.0
    log.record_predictions([prediction("new", smoking_status="never smoked")])
    assert log.enforce_retention() == 50
    assert log.count() == 1
    assert MARKER.encode() not in file_bytes(path)
    assert b"old-1" not in file_bytes(path)  # the ids are gone from the index pages too


def test_purge_removes_everything(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path)
    log.record_predictions([prediction(f"p{i}", smoking_status=MARKER) for i in range(20)])
    assert log.purge() == 20
    assert log.count() == 0
    assert MARKER.encode() not in file_bytes(path)


def test_retention_runs_on_a_timer_without_traffic(tmp_path: Path) -> None:
    now = [1_000_000.0]
    log = PredictionLog(
        tmp_path / "log.sqlite", retention=Retention(None, 60.0), clock=lambda: now[0]
    )
    log.record_predictions([prediction("old")])
    now[0] += 120.0
    log.run_retention_every(0.05)
    try:
        deadline = time.monotonic() + 5.0
        while log.count() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.count() == 0  # no write happened: the timer enforced retention
    finally:
        log.stop_retention_timer()


def test_unknown_feedback_does_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    """A bogus id is refused by a read: it neither takes nor waits for the write lock."""
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path, busy_timeout_seconds=5.0)
    log.record_predictions([prediction("known")])
    app = Flask("feedback")
    counter = Counter("stroke_feedback_total", "f", ["outcome"], registry=CollectorRegistry())
    app.extensions[FEEDBACK_KEY] = FeedbackState(
        PredictionLogWriter(log, model_version="v1"), counter
    )
    app.register_blueprint(feedback_blueprint)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another worker mid-write
    try:
        started = time.monotonic()
        response = app.test_client().post("/feedback", json={"prediction_id": "bogus", "stroke": 1})
        elapsed = time.monotonic() - started
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert response.status_code == 404
    assert elapsed < 2.5  # waiting for the lock would last its 5 s busy timeout


def test_binned_store_keeps_no_raw_numbers_and_gives_the_same_psi(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    records = [dict(r, age=min(r["age"] + 20, 120.0)) for r in training_records[:400]]
    for record in records[:40]:
        record["bmi"] = None
    app = Flask("binned")
    settings = Settings(
        monitor_db_path=tmp_path / "binned.sqlite",
        monitor_store="binned",
        monitor_min_drift_records=10,
        monitor_cache_seconds=0,
    )
    registry = CollectorRegistry()
    monitor = install_monitoring(
        app,
        settings=settings,
        reference_profile=reference_profile,
        decision_threshold=0.5,
        model_version="v1",
        registry=registry,
    ).writer
    ids = [f"b{i}" for i in range(len(records))]
    assert monitor(records, [0.1] * len(records), [False] * len(records), ids)
    stored = monitor.store.recent_features(Window(None, None))
    numeric = ("age", "avg_glucose_level", "bmi")
    for row in stored:
        for name in numeric:
            assert row[name] is None or (isinstance(row[name], int) and 0 <= row[name] <= 10)
    raw_glucose = {f"{r['avg_glucose_level']}" for r in records}
    text = (tmp_path / "binned.sqlite").read_bytes().decode("latin-1")
    assert not any(value in text for value in raw_glucose if len(value) > 4)
    raw = compute_drift(reference_profile, records)
    for name in numeric:
        exported = registry.get_sample_value("stroke_feature_psi", {"feature": name})
        assert exported == pytest.approx(raw.features[name].psi, abs=1e-12)
        test = {"feature": name, "test": "chi2"}
        assert registry.get_sample_value("stroke_feature_drift_pvalue", test) is not None
    assert registry.get_sample_value("stroke_feature_missing_rate", {"feature": "bmi"}) == 0.1
