"""The real server under gunicorn: contract, integrity check, multi-worker /metrics, load."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import requests
import yaml

from app.settings import Settings
from stroke_risk.data.schema import FEATURE_NAMES
from tests.app.conftest import (
    ARTIFACT_PATHS,
    RECORD,
    Server,
    frame_records,
    run_server_expecting_failure,
    write_lock,
)

pytestmark = pytest.mark.e2e


def locked_md5(repo_root: Path, path: str) -> str:
    lock = yaml.safe_load((repo_root / "dvc.lock").read_text())
    return next(
        out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"] == path
    )


def test_real_server_serves_the_checked_out_revision(real_server: Server, repo_root: Path) -> None:
    assert requests.get(f"{real_server.url}/health", timeout=5).json() == {"status": "ok"}
    version = requests.get(f"{real_server.url}/version", headers=real_server.auth, timeout=5)
    version = version.json()
    metadata = json.loads((repo_root / "models" / "model_metadata.json").read_text())
    assert version["model_version"] == locked_md5(repo_root, "models/model.joblib")
    assert version["threshold"] == metadata["decision_threshold"]
    assert version["model_family"] == metadata["model_family"]
    assert version["training_metrics"] == json.loads(
        (repo_root / "reports" / "metrics.json").read_text()
    )
    assert version["inference"].startswith("compiled:")
    answer = requests.post(
        f"{real_server.url}/predict", json=RECORD, headers=real_server.auth, timeout=5
    ).json()
    assert answer["model_version"] == version["model_version"]
    assert answer["threshold"] == metadata["decision_threshold"]
    assert answer["stroke_prediction"] is (answer["stroke_probability"] >= answer["threshold"])
    schema = requests.get(f"{real_server.url}/openapi.json", timeout=5).json()
    assert schema["openapi"].startswith("3.1")


def test_real_model_over_http_equals_the_pipeline_on_both_csvs(
    real_server: Server, repo_root: Path, shipped_frames: dict
) -> None:
    pipeline = joblib.load(repo_root / "models" / "model.joblib")
    session = requests.Session()
    session.headers.update(real_server.auth)
    for frame in shipped_frames.values():
        records = frame_records(frame)
        served: list[float] = []
        for start in range(0, len(records), 1000):
            response = session.post(
                f"{real_server.url}/predict",
                json={"instances": records[start : start + 1000]},
                timeout=30,
            )
            assert response.status_code == 200, response.text[:300]
            served += [p["stroke_probability"] for p in response.json()["predictions"]]
        expected = pipeline.predict_proba(frame[list(FEATURE_NAMES)])[:, 1]
        assert len(served) == len(frame)
        assert np.max(np.abs(np.array(served) - expected)) <= 1e-9


def metric_total(text: str, name: str, **labels: str) -> float:
    """Sum the samples of a metric whose labels include the given ones."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{key}="{val}"' in head for key, val in labels.items()):
            total += float(value)
    return total


def test_metrics_are_aggregated_over_workers_and_survive_a_dead_worker(
    server_factory: Callable[..., Server], logreg_settings: Settings, tmp_path: Path
) -> None:
    prometheus_dir = tmp_path / "prometheus"
    server = server_factory(
        STROKE_PROJECT_DIR=str(logreg_settings.project_dir),
        PROMETHEUS_MULTIPROC_DIR=str(prometheus_dir),
    )
    workers = server.wait_for_workers(2)
    assert len(workers) == 2

    def writers() -> set[int]:
        return {int(p.stem.rsplit("_", 1)[1]) for p in prometheus_dir.glob("counter_*.db")}

    # New connection per request (no session): the two workers share the accept queue,
    # so both end up serving; keep going until each has written its own counters.
    singles, batch = 0, 25
    while singles < 40 or (not set(workers) <= writers() and singles < 400):
        assert requests.post(f"{server.url}/predict", json=RECORD, timeout=5).status_code == 200
        singles += 1
    assert set(workers) <= writers(), "both workers should have served predictions"
    response = requests.post(
        f"{server.url}/predict", json={"instances": [RECORD] * batch}, timeout=5
    )
    assert response.status_code == 200
    assert requests.post(f"{server.url}/predict", json={"age": "x"}, timeout=5).status_code == 400

    def scrape() -> str:
        return requests.get(f"{server.url}/metrics", timeout=5).text

    for _ in range(6):  # whichever worker answers, the totals are the same
        text = scrape()
        assert metric_total(text, "stroke_predictions_total") == singles + batch
        assert metric_total(text, "stroke_predicted_probability_count") == singles + batch
        assert (
            metric_total(text, "stroke_http_requests_total", endpoint="/predict", status="200")
            == singles + 1
        )
        assert metric_total(text, "stroke_validation_failures_total", field="age") == 1
        assert metric_total(text, "stroke_model_info") == 1

    victim = workers[0]
    # Live gauges of a worker (the monitor's drift gauges will be such) must vanish when
    # it dies: give the victim one, a copy of the master's model_info file.
    master_gauge = next(prometheus_dir.glob(f"gauge_livemax_{server.process.pid}.db"))
    shutil.copy(master_gauge, prometheus_dir / f"gauge_livemax_{victim}.db")
    assert metric_total(scrape(), "stroke_model_info") == 1
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while victim in server.worker_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    replacement = server.wait_for_workers(2)
    assert victim not in replacement and len(replacement) == 2
    # child_exit marked it dead: its live gauges are gone, its counters still count.
    assert not list(prometheus_dir.glob(f"gauge_live*_{victim}.db"))
    assert list(prometheus_dir.glob(f"counter_{victim}.db"))
    text = scrape()
    assert metric_total(text, "stroke_predictions_total") == singles + batch
    assert metric_total(text, "stroke_model_info") == 1


@pytest.fixture
def project_copy(logreg_settings: Settings, tmp_path: Path) -> Path:
    """A private copy of a valid artifact set that a test may damage."""
    root = tmp_path / "project"
    shutil.copytree(logreg_settings.project_dir, root)
    return root


def assert_refused(result: Any, *expected: str) -> str:
    """Assert a non-zero exit with exactly one non-empty output line; return the line."""
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, lines
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_tampered_model_refuses_to_start(project_copy: Path, tmp_path: Path) -> None:
    model = project_copy / "models" / "serving_model.npz"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    result = run_server_expecting_failure(tmp_path, STROKE_PROJECT_DIR=str(project_copy))
    assert_refused(
        result, "models/serving_model.npz does not match dvc.lock", "make run", "dvc pull"
    )
    assert not list(tmp_path.glob("stroke-prometheus-*")), "temporary metrics dir left behind"


def test_tampered_model_is_never_unpickled(project_copy: Path, tmp_path: Path) -> None:
    """A pickle that would run code on load is refused before it is ever loaded."""
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"

    class Exploit:
        def __reduce__(self) -> Any:
            return (eval, (payload,))

    joblib.dump(Exploit(), project_copy / "models" / "serving_model.npz")
    result = run_server_expecting_failure(tmp_path, STROKE_PROJECT_DIR=str(project_copy))
    assert_refused(result, "does not match dvc.lock")
    assert not marker.exists()


def test_missing_model_refuses_to_start(project_copy: Path, tmp_path: Path) -> None:
    (project_copy / "models" / "serving_model.npz").unlink()
    result = run_server_expecting_failure(tmp_path, STROKE_PROJECT_DIR=str(project_copy))
    assert_refused(result, "models/serving_model.npz is missing", "make run", "dvc pull")


def test_unreadable_metadata_refuses_to_start(project_copy: Path, tmp_path: Path) -> None:
    (project_copy / "models" / "model_metadata.json").write_text("{not json")
    write_lock(project_copy, ARTIFACT_PATHS)
    result = run_server_expecting_failure(tmp_path, STROKE_PROJECT_DIR=str(project_copy))
    assert_refused(result, "model_metadata.json is unreadable", "make run")


def test_missing_dvc_lock_refuses_to_start(project_copy: Path, tmp_path: Path) -> None:
    (project_copy / "dvc.lock").unlink()
    result = run_server_expecting_failure(tmp_path, STROKE_PROJECT_DIR=str(project_copy))
    assert_refused(result, "dvc.lock not found", "make run")


def test_oversized_chunked_body_is_413(real_server: Server) -> None:
    """Without Content-Length the body is streamed; the limit still applies."""

    def chunks():
        yield b'{"instances": ['
        for _ in range(2100):
            yield b" " * 512
        yield b"]}"

    response = requests.post(
        f"{real_server.url}/predict",
        data=chunks(),
        headers={"Content-Type": "application/json", **real_server.auth},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"] == "request body too large"
    small = requests.post(
        f"{real_server.url}/predict",
        data=iter([json.dumps(RECORD).encode()]),
        headers={"Content-Type": "application/json", **real_server.auth},
        timeout=30,
    )
    assert small.status_code == 200


def test_server_logs_hold_no_request_data(real_server: Server) -> None:
    secret = {**RECORD, "avg_glucose_level": 211.987654, "smoking_status": "SECRET-STATUS"}
    auth = real_server.auth
    requests.post(f"{real_server.url}/predict", json=secret, headers=auth, timeout=5)
    requests.post(
        f"{real_server.url}/predict",
        json={**secret, "smoking_status": "smokes"},
        headers=auth,
        timeout=5,
    )
    requests.post(
        f"{real_server.url}/predict?age=55.5432",
        data=b'{"bmi": 33.3321',
        timeout=5,
        headers={"Content-Type": "application/json", **auth},
    )
    time.sleep(0.3)
    log = real_server.log()
    assert '"POST /predict"' in log  # the access log is on, and shows the path only
    for value in ("211.987654", "SECRET-STATUS", "55.5432", "33.3321", real_server.extra["token"]):
        assert value not in log


def test_short_load_run_has_no_errors(real_server: Server, shipped_frames: dict) -> None:
    """A few seconds of concurrent keep-alive traffic on loopback: zero errors."""
    records = frame_records(shipped_frames["healthcare"])
    results: list[int] = []
    failures: list[str] = []
    stop = time.monotonic() + 3.0

    def client(offset: int) -> None:
        session = requests.Session()
        session.headers.update(real_server.auth)
        index = offset
        while time.monotonic() < stop:
            try:
                if index % 10 == 0:
                    response = session.post(
                        f"{real_server.url}/predict",
                        json={"instances": records[index % 5000 : index % 5000 + 50]},
                        timeout=10,
                    )
                else:
                    response = session.post(
                        f"{real_server.url}/predict", json=records[index % len(records)], timeout=10
                    )
                results.append(response.status_code)
                if response.status_code != 200:
                    failures.append(response.text[:200])
            except requests.RequestException as error:
                failures.append(repr(error))
            index += 7

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) > 50
    assert failures == []
    assert requests.get(f"{real_server.url}/ready", timeout=5).status_code == 200


def test_stopping_the_server_removes_its_metrics_dir(
    server_factory: Callable[..., Server], logreg_settings: Settings, tmp_path: Path
) -> None:
    server = server_factory(STROKE_PROJECT_DIR=str(logreg_settings.project_dir))
    created = list(tmp_path.glob("stroke-prometheus-*"))
    assert len(created) == 1 and any(created[0].iterdir())
    assert server.stop() == 0
    assert not created[0].exists()


def test_model_hash_check_uses_the_bytes_that_are_loaded(logreg_settings: Settings) -> None:
    """The md5 the server reports is the md5 of the file as dvc.lock records it."""
    from app.artifacts import verify_artifacts

    artifacts = verify_artifacts(logreg_settings)
    assert hashlib.md5(artifacts.model_bytes).hexdigest() == artifacts.model_md5
