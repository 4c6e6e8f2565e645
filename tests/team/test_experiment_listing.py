"""`make exps` and `make compare` after a real `dvc exp run` and a later commit.

`dvc exp show` stops listing an experiment once HEAD moves; ours find it under its baseline
commit (DVC's ref refs/exps/<baseline>/<name>) and test it against that commit. One
experiment (threshold only: train + evaluate rerun) in a copy of the PR report's repo.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.conftest import TINY
from tests.team.conftest import HEAD_TARGET_RECALL, copy_repo, git, run

pytestmark = pytest.mark.e2e
EXPERIMENT_RECALL = 0.7


@pytest.fixture(scope="module")
def repo_with_an_older_experiment(two_commit_repo: Path, tmp_path_factory) -> tuple[Path, str]:
    root = copy_repo(two_commit_repo, tmp_path_factory.mktemp("exps") / "repo")
    override = f"threshold.target_recall={EXPERIMENT_RECALL}"
    run(["dvc", "exp", "run", "-n", "r70", "-S", override, *TINY], root, timeout=900)
    run(["git", "checkout", "--", "."], root)
    baseline = git(root, "rev-parse", "HEAD").strip()
    git(root, "commit", "-q", "--allow-empty", "-m", "later work")
    return root, baseline


def test_make_exps_lists_it_under_its_baseline_with_the_change_first(
    repo_with_an_older_experiment: tuple[Path, str],
) -> None:
    root, baseline = repo_with_an_older_experiment
    shown = run(["dvc", "exp", "show", "--json"], root).stdout
    assert "r70" not in shown  # the premise: DVC's default view lost it
    listing = run(["python", "-m", "stroke_risk.commands.exps"], root).stdout
    print(listing)  # shown by pytest -rP
    lines = listing.splitlines()
    assert max(len(line) for line in lines) <= 100
    block = lines[next(i for i, line in enumerate(lines) if f"{baseline[:7]} (HEAD~1)" in line) :]
    row = next(line for line in block if line.startswith("r70 ")).split()
    assert row[1] == f"threshold.target_recall={EXPERIMENT_RECALL}"
    assert row[2] == "logreg"
    assert block[2].split()[1] == "(baseline)"


def test_make_compare_tests_it_against_its_baseline_threshold_metrics_included(
    repo_with_an_older_experiment: tuple[Path, str],
) -> None:
    root, baseline = repo_with_an_older_experiment
    report = run(
        ["python", "-m", "stroke_risk.commands.compare", "--resamples", "300"], root
    ).stdout
    print(report)  # shown by pytest -rP
    reference = f"{baseline[:7]} (HEAD~1)"
    assert f"| {reference} | – | logreg |" in report
    assert f"| r70 | `{reference}` | logreg |" in report
    assert f"## Paired tests against `{reference}` (logreg, baseline commit)" in report
    rows = {
        cells[1]: cells[2:]
        for line in report.splitlines()
        if line.startswith("| r70 (logreg) |")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    # Only the threshold moved (0.6 -> 0.7 target recall): ranking metrics are identical,
    # recall rises and specificity falls at the experiment's own threshold.
    assert EXPERIMENT_RECALL > HEAD_TARGET_RECALL
    for metric in ("CV ROC AUC", "CV Brier", "test ROC AUC", "test Brier"):
        assert rows[metric][0].startswith("+0.0000") and rows[metric][1] == "1.000", metric
    assert float(rows["test recall"][0].split()[0]) > 0
    assert float(rows["test specificity"][0].split()[0]) < 0
    assert rows["test recall"][2] in {"better", "no significant change"}
    assert rows["test specificity"][2] in {"worse", "no significant change"}
