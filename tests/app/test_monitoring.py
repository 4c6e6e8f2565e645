"""Live monitoring is part of the default app (app/monitoring.py), in-process.

The multi-worker behaviour (one shared window, Prometheus, alerts) is tested end to end in
tests/monitoring/test_prometheus_e2e.py.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.factory import create_app, resolve_extensions
from app.model import LoadedModel
from app.monitoring import MONITOR_KEY, init_monitoring
from app.page import init_page
from app.service_state import CALLBACKS_KEY, DEFERRED_CALLBACK_MIN_RECORDS
from app.settings import Settings
from tests.app.conftest import RECORD
from tests.page.conftest import submit


@pytest.fixture
def settings(logreg_settings: Settings, tmp_path: Path) -> Settings:
    return logreg_settings.replace(
        monitor_db_path=tmp_path / "log" / "predictions.sqlite",
        monitor_min_drift_records=5,
        monitor_min_labels=2,
        monitor_min_positive_labels=1,
        monitor_min_negative_labels=1,
        monitor_cache_seconds=0,
    )


@pytest.fixture
def app(settings: Settings, logreg_model: LoadedModel) -> Flask:
    return create_app(settings, model=logreg_model)


def stored(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT prediction_id, probability, decision, label FROM predictions ORDER BY seq"
        ).fetchall()


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_monitoring_and_the_page_are_default_extensions() -> None:
    assert resolve_extensions(None, ()) == [init_page, init_monitoring]
    assert resolve_extensions((), ()) == []
    # Naming a default again in STROKE_EXTENSIONS does not register it twice.
    assert resolve_extensions(None, ("app.page:init_page",)) == [init_page, init_monitoring]


def test_every_scored_record_is_logged_and_feedback_is_accepted(
    app: Flask, settings: Settings
) -> None:
    client = app.test_client()
    writer = app.extensions[MONITOR_KEY].writer
    assert writer in app.config[CALLBACKS_KEY]
    single = client.post("/predict", json=RECORD).json
    batch = client.post("/predict", json={"instances": [RECORD, {**RECORD, "bmi": None}]}).json
    page = submit(client, {k: "" if v is None else str(v) for k, v in RECORD.items()})
    assert page.status_code == 200  # the page goes through /predict: logged too
    # Small requests are buffered and written by the worker's flusher within
    # STROKE_MONITOR_FLUSH_SECONDS (0.05 s), many per transaction.
    deadline = time.monotonic() + 2.0
    while len(rows := stored(settings.monitor_db_path)) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(rows) == 4
    served = [single, *batch["predictions"]]
    assert [(r[0], r[1], bool(r[2])) for r in rows[:3]] == [
        (p["prediction_id"], p["stroke_probability"], p["stroke_prediction"]) for p in served
    ]
    accepted = client.post(
        "/feedback", json={"prediction_id": single["prediction_id"], "stroke": 1}
    )
    assert accepted.status_code == 201
    again = client.post("/feedback", json={"prediction_id": single["prediction_id"], "stroke": 0})
    assert again.status_code == 409
    client.post(
        "/feedback", json={"prediction_id": batch["predictions"][0]["prediction_id"], "stroke": 0}
    )
    client.post("/predict", json={"instances": [RECORD] * 3})
    text = client.get("/metrics").data.decode()
    assert metric(text, "stroke_drift_window_records") == 7
    assert metric(text, "stroke_live_labels") == 2
    assert metric(text, "stroke_live_roc_auc") is not None
    assert 'stroke_feature_psi{feature="age"}' in text
    assert 'stroke_feedback_total{outcome="accepted"} 2.0' in text
    assert 'stroke_feedback_total{outcome="rejected"} 1.0' in text


def test_the_master_holds_no_open_prediction_log(app: Flask) -> None:
    """Under gunicorn create_app runs before the fork: no SQLite handle may be inherited."""
    store = app.extensions[MONITOR_KEY].writer.store
    assert getattr(store._local, "connection", None) is None  # noqa: SLF001
    app.test_client().post("/predict", json=RECORD)
    app.extensions[MONITOR_KEY].writer.flush()
    assert store.count() == 1  # reopened on first use


def test_no_model_means_no_monitoring(settings: Settings) -> None:
    app = create_app(settings, load=False)
    assert MONITOR_KEY not in app.extensions
    assert app.test_client().post("/feedback", json={}).status_code == 404
    assert not settings.monitor_db_path.exists()


def test_the_bare_api_has_no_page_and_no_feedback(
    settings: Settings, logreg_model: LoadedModel
) -> None:
    client = create_app(settings, model=logreg_model, extensions=()).test_client()
    assert client.get("/").status_code == 404
    assert client.get("/static/page.css").status_code == 404
    assert client.post("/feedback", json={}).status_code == 404
    assert client.post("/predict", json=RECORD).status_code == 200
    assert not settings.monitor_db_path.exists()


def test_large_batches_are_logged_after_the_response_and_feedback_waits_for_them(
    app: Flask, settings: Settings
) -> None:
    """A big batch's records reach the log only once the response is closed; feedback sent
    for one of them in that moment is not a 404 (it retries within a grace period)."""
    client = app.test_client()
    size = DEFERRED_CALLBACK_MIN_RECORDS
    response = client.post("/predict", json={"instances": [RECORD] * size}, buffered=False)
    assert response.status_code == 200
    assert stored(settings.monitor_db_path) == []  # not yet: the response is still open
    last_id = response.json["predictions"][-1]["prediction_id"]
    response.close()  # what the WSGI server does after sending the body
    assert len(stored(settings.monitor_db_path)) == size
    assert client.post("/feedback", json={"prediction_id": last_id, "stroke": 1}).status_code == 201
