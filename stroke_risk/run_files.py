"""A run's files read from a folder or a git revision; nested params/metrics flattened.

What comparison, the PR report, the experiment table and MLflow sync read runs with.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# A run's file by its repository path -> its text, None when the run has no such file.
Reader = Callable[[str], str | None]


def directory_reader(root: Path) -> Reader:
    """Read a run's files from a folder (the workspace); None for a missing file."""

    def read(path: str) -> str | None:
        file = root / path
        return file.read_text() if file.is_file() else None

    return read


def git_reader(repo: Path, revision: str) -> Reader:
    """Read a run's files as committed at a git revision (commit, branch or experiment ref);
    None for a file that revision does not hold. The one reader of files from git."""

    def read(path: str) -> str | None:
        result = subprocess.run(
            ["git", "show", f"{revision}:{path}"], cwd=repo, capture_output=True, text=True
        )
        return result.stdout if result.returncode == 0 else None

    return read


def flatten(mapping: Mapping[str, Any], separator: str = ".", prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": value} (keys joined by separator), in the mapping's order;
    lists stay values (as `dvc params diff` shows them)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, separator, f"{name}{separator}"))
        else:
            flat[name] = value
    return flat
