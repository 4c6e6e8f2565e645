"""Durability of the prediction log under crashes, and two hosts sharing one PostgreSQL log.

Real gunicorn masters (app/gunicorn_conf.py, 2 workers each) on loopback ports, the
repository's model, credentials; the PostgreSQL log in the session's real server
(tests/postgres_server.py), connected as the least-privileged service role.

- A worker killed with SIGKILL under load loses no answered prediction, on either backend:
  the flush interval is made long (2 s), so the killed worker's buffer certainly holds
  answered records; its journal is replayed by a surviving or restarted worker. The same
  run with the journal off loses them (so the test can fail).
- Two instances, each with its own master and port, as two hosts would run: a prediction
  scored on one takes its label on the other; the drift and live-performance figures are
  the same whichever is scraped; killing one instance (SIGKILL to its whole process group)
  under bounded load loses no prediction or label the other answered, and the survivor
  answers every request.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.app.conftest import RECORD, Server, start_secured_server
from tests.monitoring.test_whole_service_figures_e2e import service_figures
from tests.postgres_server import PostgresServer

FLUSH_SECONDS = "2"  # a long buffer: a killed worker certainly holds answered records
COMMON_ENV = {
    "STROKE_MONITOR_FLUSH_SECONDS": FLUSH_SECONDS,
    "STROKE_FEEDBACK_RATE_LIMIT": "1000000/minute",
    "STROKE_MONITOR_MIN_DRIFT_RECORDS": "50",
    "STROKE_MONITOR_MIN_LABELS": "20",
    "STROKE_MONITOR_MIN_POSITIVE_LABELS": "2",
    "STROKE_MONITOR_MIN_NEGATIVE_LABELS": "2",
    "STROKE_MONITOR_CACHE_SECONDS": "0.2",
    "STROKE_ACCESS_LOG": "",
}


@dataclass
class Traffic:
    """What one instance answered: ids answered 200, ids whose label it accepted (201)."""

    answered: set[str] = field(default_factory=set)
    labelled: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def send_load(
    server: Server, seconds: float, *, threads: int = 3, label: bool = False
) -> tuple[Traffic, list[threading.Thread]]:
    """Single-record /predict in `threads` loops for `seconds` (bounded, loopback); with
    label, each answered id is labelled on the same instance. Returns the running threads."""
    traffic = Traffic()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        session = requests.Session()
        while time.monotonic() < deadline:
            try:
                answer = session.post(
                    f"{server.url}/predict", json=RECORD, headers=server.auth, timeout=10
                )
                if answer.status_code != 200:
                    with traffic.lock:
                        traffic.failures.append(f"predict {answer.status_code}")
                    continue
                prediction_id = answer.json()["prediction_id"]
                with traffic.lock:
                    traffic.answered.add(prediction_id)
                if label:
                    given = session.post(
                        f"{server.url}/feedback",
                        json={"prediction_id": prediction_id, "stroke": 0},
                        headers=server.auth,
                        timeout=10,
                    )
                    with traffic.lock:
                        if given.status_code == 201:
                            traffic.labelled.add(prediction_id)
                        else:
                            traffic.failures.append(f"feedback {given.status_code}")
            except requests.RequestException as error:
                with traffic.lock:
                    traffic.failures.append(type(error).__name__)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    return traffic, workers


def join(workers: list[threading.Thread]) -> None:
    for worker in workers:
        worker.join(timeout=60)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def open_log(backend: str, tmp_path: Path, postgres: PostgresServer | None) -> tuple[Any, dict]:
    """(store the test reads, the servers' environment) for a backend."""
    if backend == "postgresql":
        from stroke_risk.monitoring.postgres_log import PostgresPredictionLog

        assert postgres is not None
        _, service_url = postgres.new_prediction_log()
        return PostgresPredictionLog(service_url), {"STROKE_MONITOR_DATABASE_URL": service_url}
    from stroke_risk.monitoring.prediction_log import PredictionLog

    path = tmp_path / "predictions.sqlite"
    return PredictionLog(path), {"STROKE_MONITOR_DB": str(path)}


@pytest.mark.scenario
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("backend", "journal"),
    [("sqlite", True), ("postgresql", True), ("sqlite", False)],
    ids=["sqlite", "postgresql", "sqlite-without-journal"],
)
def test_a_worker_killed_under_load_loses_no_answered_prediction(
    backend: str, journal: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    postgres = request.getfixturevalue("postgres_server") if backend == "postgresql" else None
    store, env = open_log(backend, tmp_path, postgres)
    server = start_secured_server(
        tmp_path, **COMMON_ENV, **env, STROKE_MONITOR_JOURNAL=str(journal).lower()
    )
    try:
        workers = server.wait_for_workers(2)
        assert len(workers) == 2, server.log()
        traffic, threads = send_load(server, 5.0, threads=4)
        time.sleep(2.5)
        os.kill(workers[0], signal.SIGKILL)
        join(threads)
        assert len(server.wait_for_workers(2)) == 2
        # Buffers are flushed within FLUSH_SECONDS; the dead worker's journal is replayed
        # by a flusher (each looks every second).
        # Without the journal, nothing more arrives once every buffer had its flush.
        settle = 20 if journal else 3 * float(FLUSH_SECONDS)
        everything = wait_until(lambda: traffic.answered <= store.stored_ids(), timeout=settle)
        missing = traffic.answered - store.stored_ids()
    finally:
        server.stop()
        store.close()
    assert len(traffic.answered) > 50, traffic.failures[:5]
    if journal:
        assert everything and not missing, f"{len(missing)} of {len(traffic.answered)} lost"
    else:
        assert missing, "without the journal the killed worker's buffer should be lost"


@pytest.mark.scenario
@pytest.mark.e2e
def test_two_instances_on_one_postgres_log_act_as_one_service(
    tmp_path: Path, postgres_server: PostgresServer, training_frame: Any
) -> None:
    from stroke_risk.data.schema import FEATURE_NAMES
    from stroke_risk.monitoring.postgres_log import PostgresPredictionLog

    _, service_url = postgres_server.new_prediction_log()
    store = PostgresPredictionLog(service_url)
    # The default flush interval (0.05 s): a label sent to the other host at once waits for
    # the scoring host's buffer, which only that host can flush.
    env = {
        **COMMON_ENV,
        "STROKE_MONITOR_FLUSH_SECONDS": "0.05",
        "STROKE_MONITOR_DATABASE_URL": service_url,
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    host_a = start_secured_server(tmp_path / "a", **env)
    host_b: Server | None = None
    try:
        host_b = start_secured_server(tmp_path / "b", **env)
        rows = training_frame.sample(240, random_state=0)
        records = [
            {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in rows[list(FEATURE_NAMES)].to_dict("records")
        ]
        records = [{k: (None if v != v else v) for k, v in r.items()} for r in records]  # NaN
        labels = rows["stroke"].astype(int).tolist()
        # Scored on one host, labelled on the other.
        first_ids = []
        for index, (record, label) in enumerate(zip(records, labels, strict=True)):
            scorer, labeller = (host_a, host_b) if index % 2 == 0 else (host_b, host_a)
            scored = requests.post(
                f"{scorer.url}/predict", json=record, headers=scorer.auth, timeout=10
            )
            assert scored.status_code == 200, scored.text
            prediction_id = scored.json()["prediction_id"]
            first_ids.append(prediction_id)
            given = requests.post(
                f"{labeller.url}/feedback",
                json={"prediction_id": prediction_id, "stroke": label},
                headers=labeller.auth,
                timeout=10,
            )
            assert given.status_code == 201, given.text

        def figures(server: Server) -> dict:
            text = requests.get(f"{server.url}/metrics", headers=server.auth, timeout=10).text
            found = service_figures(text)
            found.pop(("stroke_multivariate_drift_auc", ()), None)  # fitted in the background
            return found

        # Both export the figures of the whole service, not of their own traffic.
        assert wait_until(
            lambda: figures(host_a).get(("stroke_live_labels", ())) == 240, timeout=30
        )
        from_a, from_b = figures(host_a), figures(host_b)
        assert from_a[("stroke_drift_window_records", ())] == 240
        assert ("stroke_live_roc_auc", ()) in from_a
        assert from_a == from_b

        # One host dies under load: the other's predictions and labels all stay.
        traffic_a, threads_a = send_load(host_a, 6.0, threads=2)
        traffic_b, threads_b = send_load(host_b, 6.0, threads=2, label=True)
        time.sleep(2.0)
        os.killpg(host_a.process.pid, signal.SIGKILL)
        join(threads_a + threads_b)
        assert len(traffic_b.answered) > 20 and not traffic_b.failures, traffic_b.failures[:5]
        assert wait_until(lambda: traffic_b.answered <= store.stored_ids(), timeout=20)
        assert traffic_b.labelled == traffic_b.answered
        unlabelled = [pid for pid in traffic_b.labelled if store.stored_label(pid) is None]
        assert not unlabelled
        assert set(first_ids) <= store.stored_ids()
        after = requests.post(f"{host_b.url}/predict", json=RECORD, headers=host_b.auth, timeout=10)
        assert after.status_code == 200
    finally:
        host_a.stop()
        if host_b is not None:
            host_b.stop()
        store.close()
