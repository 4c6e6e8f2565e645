"""Fixtures of the service tests: small fitted models, artifact sets in tmp_path, servers.

Artifacts written here mimic the pipeline's: models/serving_model.npz (the data-only
artifact the service loads; no models/model.joblib, which the service never reads),
model_metadata.json, models/reference_profile.json, reports/metrics.json and a dvc.lock
recording their md5s.
Servers run the real command (gunicorn with app/gunicorn_conf.py) on a free loopback port
and are always stopped. Every app keeps its monitoring prediction log in a temporary
directory: Settings.for_project(tmp) puts it under tmp, and servers get STROKE_MONITOR_DB
in their own temporary directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest

from app.compiled import CompiledModel, artifact_of_pipeline
from app.explanations import build_explainer
from app.model import LoadedModel, build_scorer, load_model
from app.settings import Settings
from stroke_risk.data.features import (
    FeatureConfig,
    add_engineered_features,
    build_reference_profile,
)
from stroke_risk.data.schema import EXAMPLE_RECORD, FEATURE_NAMES, TARGET
from stroke_risk.models.explain import MatrixExplainer
from stroke_risk.models.families import FAMILIES as FAMILY_RECORDS
from stroke_risk.models.pipelines import build_model_pipeline, build_serving_pipeline
from stroke_risk.models.serving_artifact import read_serving_model, write_serving_model
from stroke_risk.ports import free_port
from tests.conftest import BRAIN_CSV, HEALTHCARE_CSV, REPO_ROOT
from tests.processes import start_process, stop_process, track, wait_until_ready

# Every family the project can build, from its one definition (stroke_risk.models.families).
FAMILIES: tuple[str, ...] = tuple(FAMILY_RECORDS)
# Small but real models of each family (their records' small_params) and the widest feature
# set each can take (the full set exercises every encoder; a monotone family takes the
# monotone set).
SMALL_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    name: (dict(family.small_params), family.widest_feature_set)
    for name, family in FAMILY_RECORDS.items()
}
TEST_THRESHOLD = 0.08
SHIPPED_CSVS = {"brain": BRAIN_CSV, "healthcare": HEALTHCARE_CSV}

RECORD: dict[str, Any] = dict(EXAMPLE_RECORD)


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the ten fields of each row as a JSON-ready record (NaN bmi -> None)."""
    records = frame[list(FEATURE_NAMES)].to_dict("records")
    for record in records:
        for name in ("age", "avg_glucose_level", "bmi"):
            value = float(record[name])
            record[name] = None if math.isnan(value) else value
        for name in ("hypertension", "heart_disease"):
            record[name] = int(record[name])
    return records


def fit_serving_pipeline(family: str, frame: pd.DataFrame) -> Any:
    """Return a small fitted serving pipeline (engineer + preprocess + model) of a family."""
    model_params, feature_set = SMALL_PARAMS[family]
    return fit_serving_pipeline_with(family, model_params, frame, feature_set)


def fit_serving_pipeline_with(
    family: str, model_params: dict[str, Any], frame: pd.DataFrame, feature_set: str = "full"
) -> Any:
    """Return a fitted serving pipeline of a family with the given model parameters."""
    config = FeatureConfig()
    features = add_engineered_features(frame[list(FEATURE_NAMES)], config)
    params = {**model_params, "feature_set": feature_set}
    fitted = build_model_pipeline(family, params, feature_config=config, seed=0)
    fitted.fit(features, frame[TARGET].to_numpy())
    return build_serving_pipeline(fitted, config)


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def pipeline_md5(pipeline: Any) -> str:
    """Return the md5 of the pipeline's joblib pickle: the model version (as the train stage
    records it in the serving artifact, and MLflow and releases.json know it by)."""
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    return hashlib.md5(buffer.getvalue()).hexdigest()


def served_version(settings: Settings) -> str:
    """Return the model version the service reports for the artifact set of settings."""
    return read_serving_model(settings.model_path.read_bytes()).pipeline_md5


def served_paths(pipeline: Any) -> tuple[CompiledModel, MatrixExplainer | None]:
    """Return (scorer, explainer) the service builds from this pipeline's serving artifact
    (exported and read back through its bytes, as app.model.load_model does)."""
    model = artifact_of_pipeline(pipeline)
    scorer = build_scorer(model)
    return scorer, build_explainer(model, scorer)


def write_lock(root: Path, paths: list[str]) -> None:
    """Write a dvc.lock recording the current md5 of each path under stage train."""
    outs = "".join(
        f"    - path: {p}\n      hash: md5\n      md5: {md5_of(root / p)}\n"
        f"      size: {(root / p).stat().st_size}\n"
        for p in paths
    )
    (root / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train:\n    cmd: python -m stages.train\n    outs:\n" + outs
    )


ARTIFACT_PATHS = [
    "models/serving_model.npz",
    "models/model_metadata.json",
    "models/reference_profile.json",
    "reports/metrics.json",
]


def training_profile(frame: pd.DataFrame) -> dict[str, Any]:
    """Return the reference profile of frame, built as the featurize stage builds it."""
    return build_reference_profile(frame, target=TARGET, seed=0)


def write_artifacts(
    root: Path,
    pipeline: Any,
    *,
    reference_profile: dict[str, Any],
    family: str = "logreg",
    threshold: float = TEST_THRESHOLD,
) -> Settings:
    """Write a complete artifact set under root and return Settings pointing at it."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "reports").mkdir(parents=True, exist_ok=True)
    write_serving_model(root / "models" / "serving_model.npz", pipeline, pipeline_md5(pipeline))
    metadata = {
        "model_family": family,
        "decision_threshold": threshold,
        "threshold_policy": {"policy": "min_recall", "target_recall": 0.8},
        "threshold_cv_metrics": {"recall": 0.8, "specificity": 0.7, "precision": 0.13},
        "training_prevalence": 0.05,
    }
    (root / "models" / "model_metadata.json").write_text(json.dumps(metadata))
    (root / "models" / "reference_profile.json").write_text(json.dumps(reference_profile))
    metrics = {"test": {"roc_auc": 0.84, "recall": 0.8}, "cv": {"roc_auc": 0.83}}
    (root / "reports" / "metrics.json").write_text(json.dumps(metrics))
    write_lock(root, ARTIFACT_PATHS)
    return Settings.for_project(root)


@pytest.fixture(scope="session")
def fitted_pipelines(brain_frame: pd.DataFrame) -> dict[str, Any]:
    """Small fitted serving pipelines of every model family, trained on brain.csv."""
    return {family: fit_serving_pipeline(family, brain_frame) for family in FAMILIES}


@pytest.fixture(scope="session")
def shipped_frames() -> dict[str, pd.DataFrame]:
    """Both shipped CSVs read with stroke_risk.data.load.load_dataset."""
    from stroke_risk.data.load import load_dataset

    return {name: load_dataset(path) for name, path in SHIPPED_CSVS.items()}


@pytest.fixture(scope="session")
def reference_profile_document(brain_frame: pd.DataFrame) -> dict[str, Any]:
    """The reference profile of brain.csv (what models/reference_profile.json holds)."""
    return training_profile(brain_frame)


@pytest.fixture(scope="session")
def project_factory(
    tmp_path_factory: pytest.TempPathFactory,
    fitted_pipelines: dict[str, Any],
    reference_profile_document: dict[str, Any],
) -> Callable[[str], Settings]:
    """Return family -> Settings of a fresh artifact set in its own tmp directory."""

    def make(family: str) -> Settings:
        root = tmp_path_factory.mktemp(f"project-{family}")
        return write_artifacts(
            root,
            fitted_pipelines[family],
            family=family,
            reference_profile=reference_profile_document,
        )

    return make


@pytest.fixture(scope="session")
def logreg_settings(project_factory: Callable[[str], Settings]) -> Settings:
    return project_factory("logreg")


@pytest.fixture(scope="session")
def logreg_model(logreg_settings: Settings) -> LoadedModel:
    return load_model(logreg_settings)


# --- servers ---------------------------------------------------------------------------


def server_env(**overrides: str) -> dict[str, str]:
    """Return the environment of a server subprocess: inherited, minus service settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STROKE_", "PROMETHEUS_MULTIPROC", "WEB_CONCURRENCY"))
    }
    env.update({"HOST": "127.0.0.1", "WEB_CONCURRENCY": "2", "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(overrides)
    # A test server stops within a second of SIGTERM: gunicorn's graceful 10 s
    # (app/gunicorn_conf.py) would wait at each teardown on the tests' idle keep-alive
    # connections. Later flags win, so a test's own GUNICORN_CMD_ARGS can still set it.
    env["GUNICORN_CMD_ARGS"] = f"--graceful-timeout 1 {overrides.get('GUNICORN_CMD_ARGS', '')}"
    return env


SERVER_COMMAND = [
    sys.executable,
    "-m",
    "gunicorn",
    "-c",
    "app/gunicorn_conf.py",
    "app:create_app()",
]


def live_children(pid: int) -> list[int]:
    """Return the sorted pids of pid's live (not zombie) child processes, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return sorted(pids)


@dataclass
class Server:
    """A gunicorn server started by a test."""

    url: str
    process: subprocess.Popen
    log_path: Path
    startup_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header of the server's test credential ({} if it runs open)."""
        return dict(self.extra.get("headers", {}))

    def worker_pids(self) -> list[int]:
        """Return the pids of the master's live child processes (the workers)."""
        return live_children(self.process.pid)

    def wait_for_workers(self, count: int, timeout: float = 20.0) -> list[int]:
        """Return the worker pids once count workers run (gunicorn boots them one by one)."""
        deadline = time.monotonic() + timeout
        while len(pids := self.worker_pids()) != count and time.monotonic() < deadline:
            time.sleep(0.05)
        return pids

    def stop(self) -> int | None:
        """Stop the server and its workers (SIGTERM to the group, SIGKILL after 15 s);
        return the master's exit status."""
        return stop_process(self.process)


def start_server(log_dir: Path, env: dict[str, str], timeout: float = 120.0) -> Server:
    """Start gunicorn on a free port and wait until /ready answers 200.

    The prediction log goes to log_dir unless env sets STROKE_MONITOR_DB. A server that
    does not become ready is stopped (workers included) before the error is raised.
    """
    port = free_port()
    env = {"STROKE_MONITOR_DB": str(log_dir / f"predictions-{port}.sqlite"), **env}
    env["PORT"] = str(port)
    log_path = log_dir / f"server-{port}.log"
    process = start_process(SERVER_COMMAND, log_path=log_path, cwd=REPO_ROOT, env=env)
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        server.startup_seconds = wait_until_ready(
            f"{server.url}/ready", process, timeout=timeout, describe=server.log
        )
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Return start(**env) -> Server; every server started is stopped at teardown."""
    servers: list[Server] = []

    def start(**env: str) -> Server:
        server = start_server(tmp_path, server_env(TMPDIR=str(tmp_path), **env))
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def start_secured_server(log_dir: Path, **env: str) -> Server:
    """start_server with one credential of every scope; its header is server.auth."""
    from app.credentials import SCOPES, add_credential

    credentials = log_dir / "credentials"
    token = add_credential(credentials, "tests", frozenset(SCOPES))
    server = start_server(
        log_dir, server_env(TMPDIR=str(log_dir), STROKE_CREDENTIALS_FILE=str(credentials), **env)
    )
    server.extra["token"] = token
    server.extra["headers"] = {"Authorization": f"Bearer {token}"}
    return server


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """gunicorn (2 workers) serving the repository's own model revision (from `dvc repro`),
    with credentials: requests send server.auth."""
    server = start_secured_server(tmp_path_factory.mktemp("real-server"))
    try:
        yield server
    finally:
        server.stop()


def run_server_expecting_failure(
    tmp_path: Path, timeout: float = 60.0, **env: str
) -> subprocess.CompletedProcess:
    """Run gunicorn that is expected to refuse to start; return its exit status and output.

    Should it start after all, it is stopped with its workers when timeout runs out (and
    subprocess.TimeoutExpired is raised).
    """
    monitor_db = str(tmp_path / "predictions.sqlite")
    process = subprocess.Popen(
        SERVER_COMMAND,
        cwd=REPO_ROOT,
        env=server_env(
            PORT=str(free_port()), TMPDIR=str(tmp_path), STROKE_MONITOR_DB=monitor_db, **env
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    track(process)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        stop_process(process)
    return subprocess.CompletedProcess(SERVER_COMMAND, process.returncode, stdout, stderr)
