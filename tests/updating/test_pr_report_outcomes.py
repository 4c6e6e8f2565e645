"""make pr-report's outcome-label section (stroke_risk/reports/pr_report.outcome_section)."""

import json
import subprocess
from pathlib import Path

import pytest

from stroke_risk.reports.pr_report import outcome_section


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def write(root: Path, path: str, text: str) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)


@pytest.mark.integration
def test_section_shows_the_decision_at_base_and_head_and_both_reports(tmp_path):
    git(tmp_path, "init", "-q")
    write(tmp_path, "reports/outcomes/update.json", json.dumps({"method": "keep"}))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    base = git(tmp_path, "rev-parse", "HEAD")
    write(
        tmp_path,
        "reports/outcomes/update.json",
        json.dumps({"method": "recalibration_in_the_large"}),
    )
    write(tmp_path, "reports/outcomes/validation.md", "# Validation on collected outcomes\n\nX\n")
    write(tmp_path, "reports/outcomes/update.md", "# Update by the change-control plan\n\nY\n")
    section = outcome_section(tmp_path, base)
    assert "Update decision: base keep, head recalibration in the large." in section
    assert "#### Validation on collected outcomes" in section
    assert "#### Update by the change-control plan" in section


@pytest.mark.integration
def test_no_outcome_reports_no_section(tmp_path):
    git(tmp_path, "init", "-q")
    write(tmp_path, "a.txt", "a")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    assert outcome_section(tmp_path, git(tmp_path, "rev-parse", "HEAD")) == ""
