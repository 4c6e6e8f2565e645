"""Helpers of the team tests: scratch copies of the repository, subprocesses, Chromium."""

from __future__ import annotations

import os
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
from tests.conftest import REPO_ROOT, copy_tracked_files
from tests.pipeline.conftest import TINY_BUDGET
from tests.processes import start_process, stop_process

VENV_BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


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


# Module scope, like every browser fixture here: a Playwright sync session left open for the
# whole test session would make the next file's sync_playwright() on the same xdist worker
# fail ("Sync API inside the asyncio loop").
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless system Chromium driven by Playwright (closed at teardown)."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing: run `make system-deps`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=15_000
        )
        try:
            yield browser
        finally:
            browser.close()


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


@dataclass
class TrackingStack:
    """`python -m stroke_risk.tracking.server` running: local PostgreSQL + MLflow server."""

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
def tracking_stack() -> Iterator[TrackingStack]:
    """What `make tracking-server ARGS=--auth` runs, in a scratch state folder on free ports."""
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
    env = command_env()
    env.pop("PGPASSWORD", None)
    command = [
        sys.executable,
        "-m",
        "stroke_risk.tracking.server",
        "--state-dir",
        str(state_dir),
        "--pg-port",
        str(pg_port),
        "--port",
        str(port),
        # With MLflow's basic-auth app, as a team server runs: every test of the stack goes
        # through it, so one server start tests both.
        "--auth",
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
