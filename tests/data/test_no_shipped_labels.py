"""The outcome set the repository ships in git is empty: labels are patient data and only
ever DVC-tracked (never pushed by default), README "Outcome labels"."""

import subprocess

import pytest

from stroke_risk.updating.collect import OUTCOMES_DIR, read_outcomes
from tests.conftest import REPO_ROOT


@pytest.mark.integration
def test_git_holds_no_outcome_labels():
    tracked = subprocess.run(
        ["git", "ls-files", str(OUTCOMES_DIR)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if tracked:  # the shipped empty set
        assert read_outcomes(REPO_ROOT / OUTCOMES_DIR).empty
    else:  # a deployment's labels: DVC-tracked, and not pushed unless allowed
        assert (REPO_ROOT / "data/outcomes.dvc").is_file()
