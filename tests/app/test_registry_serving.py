"""The registered MLflow model, served by `mlflow models serve`, answers like /predict.

A scratch copy of the repository runs the pipeline (tiny budget) and the MLflow sync that
`make run` runs, which registers the model as `stroke-risk@candidate` in the copy's own
tracking store. Then two real processes on free ports serve that revision:
`mlflow models serve -m models:/stroke-risk@candidate --env-manager local` and the
service (gunicorn, app/gunicorn_conf.py, STROKE_PROJECT_DIR = the copy). The same records
(both shipped CSVs, missing bmi included) must get the same probability, decision and
threshold from /invocations and from /predict.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from stroke_risk.data.load import load_dataset
from stroke_risk.ports import free_port
from tests.app.conftest import (
    SHIPPED_CSVS,
    Server,
    frame_records,
    server_env,
    start_server,
)
from tests.pipeline.conftest import run, workspace_from_template
from tests.processes import start_process, stop_process, wait_until_ready

REGISTERED = "models:/stroke-risk@candidate"
RECORDS_PER_FILE = 40


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, pipeline_template: Path) -> Path:
    """A copy of the repository with its pipeline run and the model registered."""
    root = workspace_from_template(
        pipeline_template,
        tmp_path_factory.mktemp("registry-workspace"),
        tmp_path_factory.mktemp("remote"),
    )
    run(
        [sys.executable, "-m", "stroke_risk.commands.mlflow_runs", "sync"],
        root,
        env=tracking_env(root),
    )
    return root


def tracking_env(root: Path) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # `mlflow models serve` starts uvicorn by name: the virtualenv's bin on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@pytest.fixture(scope="module")
def mlflow_url(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow models serve` of the registered candidate, on a free port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("mlflow-serve") / "serve.log"
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        REGISTERED,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "1",
    ]
    process = start_process(
        command, log_path=log_path, cwd=workspace, env={**os.environ, **tracking_env(workspace)}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(
            url + "/ping",
            process,
            timeout=180,
            describe=lambda: log_path.read_text(errors="replace"),
        )
        yield url
    finally:
        stop_process(process, timeout=20)


@pytest.fixture(scope="module")
def service(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service serving the same revision (the copy's models/ and dvc.lock)."""
    log_dir = tmp_path_factory.mktemp("registry-service")
    server = start_server(
        log_dir, server_env(TMPDIR=str(log_dir), STROKE_PROJECT_DIR=str(workspace))
    )
    try:
        yield server
    finally:
        server.stop()


def sample_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in SHIPPED_CSVS.values():
        frame = load_dataset(path)
        # Missing bmi first (healthcare file), then a spread of the rest.
        ordered = pd.concat([frame[frame["bmi"].isna()].head(5), frame.iloc[::97]])
        records += frame_records(ordered.head(RECORDS_PER_FILE))
    return records


def test_mlflow_models_serve_answers_like_predict(
    mlflow_url: str, service: Server, workspace: Path
) -> None:
    records = sample_records()
    assert any(record["bmi"] is None for record in records)
    served = requests.post(
        service.url + "/predict", json={"instances": records}, timeout=30
    ).json()["predictions"]
    answer = requests.post(
        mlflow_url + "/invocations", json={"dataframe_records": records}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    registered = answer.json()["predictions"]
    assert len(registered) == len(served) == len(records)
    version = requests.get(service.url + "/version", timeout=5).json()
    for ours, theirs in zip(served, registered, strict=True):
        assert math.isclose(
            theirs["stroke_probability"], ours["stroke_probability"], rel_tol=1e-9, abs_tol=1e-12
        )
        assert bool(theirs["stroke_prediction"]) is ours["stroke_prediction"]
        assert theirs["threshold"] == ours["threshold"] == version["threshold"]
    # Not all one decision: the comparison covers both sides of the threshold.
    assert {p["stroke_prediction"] for p in served} == {True, False}
