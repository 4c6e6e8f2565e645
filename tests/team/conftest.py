"""Helpers of the team tests: scratch copies of the repository, subprocesses, Chromium."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from stroke_risk.ports import free_port
from stroke_risk.tracking.object_store import (
    MLFLOW_ENDPOINT_ENV,
    ObjectStoreError,
    S3Credentials,
    SeaweedLayout,
    prepare,
    seaweedfs_command,
    wait_until_ready,
    weed_binary,
)
from tests.conftest import REPO_ROOT, copy_tracked_files
from tests.pipeline.conftest import TINY_BUDGET
from tests.processes import start_process, stop_process

VENV_BIN = Path(sys.executable).parent


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a project command: venv first on PATH, telemetry off, no MLflow URI."""
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra)
    return env


def run(
    command: list[str],
    cwd: Path,
    *,
    timeout: int = 300,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or command_env(),
    )
    if check:
        assert result.returncode == 0, (
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def git(root: Path, *args: str) -> str:
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], root).stdout


def set_params(root: Path, values: dict[tuple[str, str], Any]) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for (section, key), value in values.items():
        params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def scratch_repo(root: Path, *, budget: dict[tuple[str, str], Any] | None = None) -> Path:
    """A fresh-clone-like git repository in root, optionally with params overridden."""
    copy_tracked_files(root)
    if budget:
        set_params(root, budget)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "copy")
    return root


BASE_TARGET_RECALL, HEAD_TARGET_RECALL = 0.8, 0.6


@pytest.fixture(scope="session")
def two_commit_repo(tmp_path_factory: pytest.TempPathFactory, pipeline_template: Path) -> Path:
    """A scratch repo whose HEAD lowers threshold.target_recall; real `dvc repro` at each commit.

    Tiny budgets; the outputs (dvc.lock, reports/) are committed at both commits, as a
    contributor would before opening a pull request. The base commit is the session's
    pipeline_template (the same tiny budget, its own DVC remote here). Built once per run
    (tests/conftest.py built_once) and read-only: tests change copies of it (copy_repo).
    """
    from tests.conftest import built_once
    from tests.pipeline.conftest import workspace_from_template

    def build(folder: Path) -> None:
        root = workspace_from_template(pipeline_template, folder / "repo", folder / "remote")
        params = yaml.safe_load((root / "params.yaml").read_text())
        assert params["threshold"]["target_recall"] == BASE_TARGET_RECALL
        assert all(params[section][key] == value for (section, key), value in TINY_BUDGET.items())
        set_params(root, {("threshold", "target_recall"): HEAD_TARGET_RECALL})
        run(["dvc", "repro"], root, timeout=900)
        git(root, "add", "-A")
        git(root, "commit", "-qm", "head: lower target recall")

    return built_once(tmp_path_factory, "two-commit-repo", build) / "repo"


OBJECT_STORE_BUCKET = "stroke-team"


@dataclass(frozen=True)
class ObjectStore:
    """A SeaweedFS S3 API on loopback with one bucket and one random key pair."""

    endpoint_url: str
    credentials: S3Credentials
    bucket: str = OBJECT_STORE_BUCKET

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client_env(self) -> dict[str, str]:
        """What a DVC or MLflow client needs: the key pair and (for MLflow) the endpoint."""
        return {**self.credentials.env(), MLFLOW_ENDPOINT_ENV: self.endpoint_url}

    def keys(self, prefix: str) -> list[str]:
        """Every object key under prefix in the bucket."""
        from stroke_risk.tracking.object_store import s3_client

        client: Any = s3_client(self.endpoint_url, self.credentials)
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """SeaweedFS (`weed mini`) in a temporary folder on free loopback ports, for the session:
    the team's DVC remote and MLflow artifact store in these tests."""
    try:
        weed = weed_binary()
    except ObjectStoreError as error:
        pytest.skip(str(error))
    state = tmp_path_factory.mktemp("object-store")
    credentials = S3Credentials(f"AK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(24))
    layout = SeaweedLayout.on_free_ports(state)
    prepare(layout, credentials)
    process = start_process(
        seaweedfs_command(layout, buckets=(OBJECT_STORE_BUCKET,), weed=weed),
        log_path=state / "seaweedfs.log",
    )
    try:
        try:
            wait_until_ready(
                layout, credentials, process, buckets=(OBJECT_STORE_BUCKET,), timeout=90
            )
        except ObjectStoreError as error:
            raise AssertionError(f"{error}:\n{(state / 'seaweedfs.log').read_text()}") from None
        yield ObjectStore(layout.endpoint_url, credentials)
    finally:
        stop_process(process)


@dataclass
class TrackingStack:
    """`python -m stroke_risk.commands.tracking_server` running: PostgreSQL + MLflow server."""

    state_dir: Path
    url: str
    pg_port: int
    process: subprocess.Popen
    output: Path

    @property
    def pgpass(self) -> Path:
        return self.state_dir / "pgpass"

    def database_url(self, database: str) -> str:
        return f"postgresql+psycopg://stroke@127.0.0.1:{self.pg_port}/{database}"

    @property
    def admin_password(self) -> str:
        """The MLflow basic-auth admin password `--auth` created (mode 600, state folder)."""
        return (self.state_dir / "mlflow-admin-password").read_text().strip()

    def client_env(self, **extra: str) -> dict[str, str]:
        """A client's environment: the database password only through the libpq password
        file, MLflow credentials through MLflow's own variables."""
        env = command_env(
            PGPASSFILE=str(self.pgpass),
            MLFLOW_TRACKING_USERNAME="admin",
            MLFLOW_TRACKING_PASSWORD=self.admin_password,
            **extra,
        )
        env.pop("PGPASSWORD", None)
        return env


@pytest.fixture(scope="session")
def tracking_stack(object_store: ObjectStore) -> Iterator[TrackingStack]:
    """What `make tracking-server ARGS='--auth --artifacts s3://...'` runs, in a scratch state
    folder on free ports, its artifacts in the session's object store."""
    if not any(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL is not installed: run `make system-deps`")
    # As `make tracking-server` after `make serve` finds it: its state under a `var/` that the
    # prediction log created 0700, inside a 0700 scratch folder (the cluster belongs to the
    # `postgres` user when run as root, and must still reach its folder).
    scratch = Path(tempfile.mkdtemp(prefix="stroke-tracking-"))
    (scratch / "var").mkdir(mode=0o700)
    os.chmod(scratch / "var", 0o700)
    state_dir = scratch / "var" / "tracking"
    state_dir.mkdir()
    pg_port, port = free_port(), free_port()
    output = state_dir / "cli-output.txt"
    env = command_env(**object_store.client_env())
    env.pop("PGPASSWORD", None)
    command = [
        sys.executable,
        "-m",
        "stroke_risk.commands.tracking_server",
        "--state-dir",
        str(state_dir),
        "--pg-port",
        str(pg_port),
        "--port",
        str(port),
        # With MLflow's basic-auth app, as a team server runs: every test of the stack goes
        # through it, so one server start tests both.
        "--auth",
        # Artifacts on S3-compatible storage, as a team keeps them: one server start tests
        # that too (clients still go through the server, without storage keys).
        "--artifacts",
        object_store.url("mlflow"),
    ]
    process = start_process(command, log_path=output, cwd=REPO_ROOT, env=env)
    stack = TrackingStack(state_dir, f"http://127.0.0.1:{port}", pg_port, process, output)
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops" not in output.read_text():
            assert process.poll() is None, f"tracking server exited:\n{output.read_text()}"
            assert time.monotonic() < deadline, f"tracking server not up:\n{output.read_text()}"
            time.sleep(0.5)
        yield stack
    finally:
        # SIGTERM lets it stop PostgreSQL and MLflow in order; the group is killed after 60 s.
        stop_process(process, timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)


def copy_repo(source: Path, target: Path) -> Path:
    """A full copy of a scratch repo (git history, DVC cache, outputs and MLflow runs)."""
    from tests.pipeline.conftest import relocate_mlflow_store

    shutil.copytree(source, target, symlinks=True)
    relocate_mlflow_store(target, source)
    return target
