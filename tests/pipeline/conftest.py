"""Scratch copies of the repository for the end-to-end pipeline tests."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import copy_tracked_files

# The budget of every pipeline run in the tests: they check plumbing, not model quality.
# One process per stage (n_jobs=1): the two xdist workers already keep both cores busy, so a
# stage's loky workers only add their start-up (each imports the whole stack); unit tests
# hold the results independent of n_jobs.
TINY_BUDGET: dict[tuple[str, str], object] = {
    ("tune", "n_trials"): 2,
    ("tune", "n_jobs"): 1,
    ("cv", "n_repeats"): 1,
    ("evaluate", "bootstrap_resamples"): 50,
    ("evaluate", "importance_repeats"): 1,
    ("instability", "n_bootstrap"): 20,
    ("instability", "n_jobs"): 1,
}
# The same budget as `dvc exp run` overrides (Hydra composes each run from conf/ afresh).
TINY = [
    arg
    for (section, key), value in TINY_BUDGET.items()
    for arg in ("-S", f"{section}.{key}={value}")
]


def with_tiny_budget(params_path: Path) -> None:
    """Rewrite a params.yaml with TINY_BUDGET applied."""
    params = yaml.safe_load(params_path.read_text())
    for (section, key), value in TINY_BUDGET.items():
        params[section][key] = value
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def run(
    command: list[str], cwd: Path, timeout: int = 300, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    # The venv's bin first, so `dvc` and `python` are the project's even outside `make`.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    base = {**os.environ, "PATH": path, "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}
    base.pop("MLFLOW_TRACKING_URI", None)
    env = {**base, **(env or {})}
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert not check or result.returncode == 0, (
        f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result


def make_workspace(root: Path, remote: Path) -> Path:
    """A fresh clone-like copy (tracked files only) with a tiny budget, its own DVC remote,
    the pipeline run and everything committed."""
    copy_tracked_files(root)
    with_tiny_budget(root / "params.yaml")
    run(["git", "init", "-q"], root)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], root)
    commit_all(root, "copy")
    run(["dvc", "repro"], root, timeout=600)
    commit_all(root, "pipeline outputs")
    return root


def workspace_from_template(template: Path, root: Path, remote: Path) -> Path:
    """A private copy at root of a make_workspace result (tests/conftest.py's session
    `pipeline_template`): the same files, git history, DVC cache, run cache and MLflow runs as
    make_workspace(root, remote) gives, for the cost of a copy instead of a `dvc repro`."""
    shutil.copytree(template, root, symlinks=True, dirs_exist_ok=True)
    relocate_mlflow_store(root, template)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], root)
    return root


def relocate_mlflow_store(root: Path, original: Path) -> None:
    """Point the absolute paths in root's mlflow.db (a copy of original's) into root.

    The train stage's MLflow store records artifact locations as absolute paths; without
    this, a copy's runs would read and write the original's mlruns/ folder."""
    store = root / "mlflow.db"
    if not store.exists():
        return
    with sqlite3.connect(store) as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            columns = connection.execute(f'PRAGMA table_info("{table}")').fetchall()
            for column in (
                column[1]
                for column in columns
                if "CHAR" in column[2].upper() or "TEXT" in column[2].upper()
            ):
                connection.execute(
                    f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                    f'WHERE instr("{column}", ?) > 0',
                    (str(original), str(root), str(original)),
                )
    connection.close()


def commit_all(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], root)
