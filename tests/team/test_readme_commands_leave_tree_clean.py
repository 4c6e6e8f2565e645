"""What the README's commands write into the work tree is git-ignored, so `make release`
(which refuses a dirty tree) still works after them; and `make plots-diff` draws BASE
against the workspace.

The plot commands run for real in a scratch repository; the outputs of the heavier commands
(servers, the pipeline, reports), exercised by their own tests, are checked by path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.team.conftest import git, run, scratch_repo

pytestmark = pytest.mark.e2e
# -o: the scratch copy has no .venv of its own; the test's venv is on PATH.
MAKE = ["make", "-o", ".venv/.runtime-installed"]
# command (as the README gives it) -> a file it writes into the tree.
WRITTEN_ELSEWHERE = {
    "make run / make sync (MLflow store)": "mlflow.db",
    "make run (MLflow artifacts)": "mlruns/1/x/artifacts/model.joblib",
    "mlflow ui / mlflow server artifacts": "mlartifacts/1/x",
    "make serve (prediction log)": "var/monitoring/predictions.sqlite",
    "make tracking-server": "var/tracking/pgpass",
    "make pr-report": "pr-report.md",
    "make pr-report (figures)": "pr-report/roc.png",
    "make compare": "comparison.md",
    "make notebook": "notebook/demo.executed.ipynb",
    "tune.storage: sqlite:///optuna.db": "optuna.db",
    "make test STROKE_TEST_ARTIFACTS=1": "test-artifacts/page.png",
    "dvc plots show": "dvc_plots/index.html",
}


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scratch_repo(tmp_path_factory.mktemp("readme-commands"))


@pytest.mark.scenario
def test_plot_commands_leave_a_clean_tree(plots_repo: Path) -> None:
    for command in (
        ["dvc", "plots", "show"],
        ["dvc", "plots", "diff", "HEAD"],
        [*MAKE, "plots-diff", "BASE=HEAD"],
    ):
        run(command, plots_repo, timeout=180)
    assert (plots_repo / "dvc_plots" / "index.html").is_file()
    assert git(plots_repo, "status", "--porcelain", "--untracked-files=all") == ""


@pytest.mark.parametrize("path", sorted(WRITTEN_ELSEWHERE.values()))
def test_outputs_of_the_other_readme_commands_are_ignored(path: str) -> None:
    result = run(["git", "check-ignore", "--no-index", "-q", path], REPO_ROOT, check=False)
    assert result.returncode == 0, f"{path} is not git-ignored"


@pytest.mark.scenario
def test_plots_diff_overlays_base_and_workspace(plots_repo: Path) -> None:
    roc = plots_repo / "reports" / "plots" / "roc.csv"
    original = roc.read_text()
    try:
        lines = original.splitlines()
        # A visibly different workspace curve: every true-positive rate halved.
        changed = [lines[0]] + [
            ",".join(str(float(v) / 2) if i == 1 else v for i, v in enumerate(line.split(",")))
            for line in lines[1:]
        ]
        roc.write_text("\n".join(changed) + "\n")
        result = run([*MAKE, "plots-diff", "BASE=HEAD"], plots_repo, timeout=180)
    finally:
        roc.write_text(original)
    page = plots_repo / "dvc_plots" / "diff" / "index.html"
    assert "dvc_plots/diff/index.html" in result.stdout
    text = page.read_text()
    end = text.index("vegaEmbed('#roc', spec)")
    start = text.rindex("var spec = ", 0, end) + len("var spec = ")
    values = json.loads(text[start:end].strip().rstrip(";"))["data"]["values"]
    assert {row["rev"] for row in values} == {"HEAD", "workspace"}
    tpr = {
        rev: [float(r["tpr"]) for r in values if r["rev"] == rev and r["field"] == "tpr"]
        for rev in ("HEAD", "workspace")
    }
    assert tpr["workspace"] == pytest.approx([v / 2 for v in tpr["HEAD"]])
    # Offline: the vendored template, no CDN script.
    assert "cdn.jsdelivr" not in text and "<script src=" not in text


@pytest.mark.scenario
def test_plots_diff_refuses_an_unknown_base_in_one_line(plots_repo: Path) -> None:
    result = run([*MAKE, "plots-diff", "BASE=no-such-branch"], plots_repo, check=False)
    assert result.returncode == 2
    assert "BASE=no-such-branch is not a branch, tag or commit here" in result.stderr
