"""Fixtures shared by the whole suite. Tests never write into the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Safety nets so no test writes into the repository by accident: any app started without
# an explicit prediction-log path, and hypothesis' example database, use a scratch folder.
_SCRATCH = tempfile.mkdtemp(prefix="stroke-tests-")
os.environ.setdefault("STROKE_MONITOR_DB", os.path.join(_SCRATCH, "predictions.sqlite"))
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(_SCRATCH, "hypothesis"))

BRAIN_CSV = REPO_ROOT / "data" / "raw" / "brain.csv"
HEALTHCARE_CSV = REPO_ROOT / "data" / "raw" / "healthcare-dataset-stroke-data.csv"


def copy_tracked_files(root: Path) -> None:
    """Copy the repository's tracked and unignored files (what a fresh clone has) to root."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, names.split("\0")):
        if (REPO_ROOT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, root / name)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def brain_raw_text() -> str:
    return BRAIN_CSV.read_text()


@pytest.fixture(scope="session")
def brain_frame() -> pd.DataFrame:
    from stroke_risk.data import load_dataset

    return load_dataset(BRAIN_CSV)
