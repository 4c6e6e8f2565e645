"""Scratch git repositories with DVC experiments stored as DVC stores them, for the unit tests
of comparison and the experiment table (tests/team/ runs the real `dvc exp run`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

Git = Callable[..., str]


def git_repo(repo: Path) -> Git:
    """An empty git repository at repo; returns a function running git there (its stdout)."""
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    return git


def commit_experiment(git: Git, baseline: str, name: str) -> None:
    """Commit the work tree as experiment `name` of baseline, under DVC's ref layout
    refs/exps/<baseline[:2]>/<baseline[2:]>/<name>, then return the work tree to baseline."""
    git("add", "-A")
    git("commit", "-qm", name)
    git("update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}", "HEAD")
    git("reset", "-q", "--hard", baseline)
