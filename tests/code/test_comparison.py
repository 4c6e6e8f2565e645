"""Paired comparisons: the corrected t-test, the paired bootstrap, and the command.

Experiments are stored as DVC stores them (git refs refs/exps/<baseline>/<name>); the real
`dvc exp run` path is tested in tests/team/test_experiment_listing.py.
"""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from sklearn.metrics import roc_auc_score

from stroke_risk.commands.compare import main
from stroke_risk.evaluation.comparison import (
    ComparisonError,
    compare,
    corrected_resampled_ttest,
    direction,
    experiment_revisions,
    load_run,
    paired_bootstrap,
    paired_tests,
    recent_baselines,
)
from stroke_risk.run_files import directory_reader
from tests.code.fake_experiments import commit_experiment, git_repo


def test_without_the_correction_it_is_the_plain_paired_t_test():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.84, 0.02, 15), rng.normal(0.835, 0.02, 15)
    plain = stats.ttest_rel(a, b)
    result = corrected_resampled_ttest(a, b, test_train_ratio=0.0)
    assert result["t"] == pytest.approx(plain.statistic)
    assert result["p"] == pytest.approx(plain.pvalue)
    assert result["df"] == 14


def test_correction_inflates_the_variance_by_the_nadeau_bengio_factor():
    d = np.array([0.01, 0.02, -0.005, 0.015, 0.0, 0.012, 0.008, -0.002, 0.02, 0.004])
    result = corrected_resampled_ttest(d, np.zeros(10), test_train_ratio=0.25)
    expected_t = d.mean() / np.sqrt((1 / 10 + 0.25) * d.var(ddof=1))
    assert result["t"] == pytest.approx(expected_t)
    assert result["p"] == pytest.approx(2 * stats.t.sf(abs(expected_t), 9))
    plain = corrected_resampled_ttest(d, np.zeros(10), test_train_ratio=0.0)
    assert result["p"] > plain["p"]
    assert result["ci_low"] < result["difference"] < result["ci_high"]


def scored(seed=0, n=1500):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.06).astype(int)
    good = np.clip(0.04 + 0.25 * y * rng.random(n) + 0.05 * rng.random(n), 0.001, 0.999)
    weak = np.clip(0.04 + 0.05 * y * rng.random(n) + 0.05 * rng.random(n), 0.001, 0.999)
    return y, good, weak


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    y, good, weak = scored()
    result = paired_bootstrap(y, good, weak, n_resamples=300, seed=0)
    auc = result["roc_auc"]
    assert auc["difference"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, weak))
    assert auc["ci_low"] > 0 and auc["p"] < 0.05
    same = paired_bootstrap(y, good, good, n_resamples=300, seed=0)
    assert same["roc_auc"]["difference"] == 0 and same["roc_auc"]["p"] == 1.0
    assert result == paired_bootstrap(y, good, weak, n_resamples=300, seed=0)


def write_run(
    root, *, family, data="brain", fold_auc, predictions, cv_seed=42, threshold=0.1, metrics=None
):
    root.mkdir(parents=True)
    params = {
        "data": {"name": data, "raw_path": f"data/raw/{data}.csv"},
        "model": {"family": family},
        "cv": {"n_splits": 5, "n_repeats": 3, "seed": cv_seed},
        "split": {"test_size": 0.2, "seed": 42},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "reports").mkdir()
    folds = [
        {"fold": i, "roc_auc": auc, "average_precision": 0.2, "brier": 0.043}
        for i, auc in enumerate(fold_auc)
    ]
    tuning = {
        "family": family,
        "cv": {"roc_auc": float(np.mean(fold_auc)), "roc_auc_std": float(np.std(fold_auc))},
        "fold_scores": folds,
    }
    (root / "reports" / "tuning.json").write_text(json.dumps(tuning))
    y, p = predictions
    evaluation = {
        "test": {"roc_auc": {"value": roc_auc_score(y, p), "ci_low": 0.8, "ci_high": 0.9}},
        "provenance": {"train_sha256": "abc"},
        "threshold": {"value": threshold},
    }
    (root / "reports" / "metrics.json").write_text(json.dumps(metrics or {"cv": {}}))
    (root / "reports" / "evaluation.json").write_text(json.dumps(evaluation))
    pd.DataFrame({"stroke": y, "probability": p}).to_csv(
        root / "reports" / "test_predictions.csv", index=False
    )
    return root


@pytest.fixture
def three_runs(tmp_path):
    y, good, weak = scored()
    rng = np.random.default_rng(1)
    base = rng.normal(0.84, 0.02, 15)
    return [
        write_run(tmp_path / "lr", family="logreg", fold_auc=base + 0.01, predictions=(y, good)),
        write_run(tmp_path / "rf", family="random_forest", fold_auc=base, predictions=(y, weak)),
        write_run(
            tmp_path / "hc",
            family="logreg",
            data="healthcare",
            fold_auc=base,
            predictions=(y, good),
        ),
    ]


def test_compare_pairs_runs_on_the_same_data_only(three_runs):
    runs = [load_run(path.name, directory_reader(path)) for path in three_runs]
    report = compare(runs, n_resamples=200)
    assert "| lr | – | logreg | brain |" in report and "| hc | – | logreg | healthcare |" in report
    assert "## Paired tests against `lr` (logreg, best CV ROC AUC on this data)" in report
    row = next(
        line for line in report.splitlines() if line.startswith("| rf (random_forest) | CV ROC AUC")
    )
    assert "-0.0100" in row  # the CV folds differ by exactly 0.01
    assert "Not tested (no reference on the same data and folds): `hc`." in report


@pytest.mark.integration
def test_command_reads_folders_and_reports_bad_sources(three_runs, tmp_path, capsys):
    output = tmp_path / "comparison.md"
    code = main(
        [str(three_runs[0]), str(three_runs[1]), "--resamples", "100", "--output", str(output)]
    )
    assert code == 0
    assert "## Paired tests" in output.read_text()
    assert main(["no-such-run"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no-such-run" in error[0]
    (three_runs[2] / "reports" / "tuning.json").unlink()
    with pytest.raises(ComparisonError, match="tuning.json not found"):
        load_run("hc", directory_reader(three_runs[2]))


@pytest.mark.integration
def test_experiments_are_found_by_their_git_refs(three_runs, tmp_path):
    repo = tmp_path / "repo"
    git = git_repo(repo)
    (repo / "README").write_text("base")
    git("add", "-A")
    git("commit", "-qm", "base")
    head = git("rev-parse", "HEAD")
    for path in three_runs[:2]:
        put_run(repo, path)
        commit_experiment(git, head, path.name)
    assert list(experiment_revisions(repo)) == ["lr", "rf"]
    code = main(["--repo", str(repo), "lr", "rf", "--resamples", "100"])
    assert code == 0


def test_direction_knows_lower_is_better_for_brier():
    assert direction("brier", -0.002, 0.01) == "better"
    assert direction("roc_auc", -0.002, 0.01) == "worse"
    assert direction("recall", 0.1, 0.2) == "no significant change"


def test_a_threshold_change_is_tested_at_each_runs_own_threshold(tmp_path):
    """Same probabilities, lower threshold: ranking metrics are identical (p = 1), recall
    rises and specificity falls, significantly, by exactly the counts' difference."""
    y, good, _ = scored()
    low = load_run(
        "low",
        directory_reader(
            write_run(
                tmp_path / "low",
                family="logreg",
                fold_auc=[0.8] * 5,
                predictions=(y, good),
                threshold=0.06,
            )
        ),
    )
    high = load_run(
        "high",
        directory_reader(
            write_run(
                tmp_path / "high",
                family="logreg",
                fold_auc=[0.8] * 5,
                predictions=(y, good),
                threshold=0.15,
            )
        ),
    )
    tests = {t.key: t for t in paired_tests(low, high, n_resamples=300, seed=0)}
    assert tests["test.roc_auc"].difference == 0 and tests["test.roc_auc"].p == 1.0
    positives = y == 1
    expected_recall = np.mean(good[positives] >= 0.06) - np.mean(good[positives] >= 0.15)
    assert expected_recall > 0
    assert tests["test.recall"].difference == pytest.approx(expected_recall)
    assert tests["test.recall"].verdict == "better"
    assert tests["test.specificity"].verdict == "worse"
    assert tests["test.recall"].ci_low > 0 and tests["test.specificity"].ci_high < 0
    assert "test.precision" in tests
    assert tests["cv.roc_auc"].verdict == "no significant change"


def test_the_nested_cv_estimate_is_a_column_when_a_run_has_it(tmp_path):
    y, good, weak = scored()
    nested = {"cv": {"roc_auc_nested": 0.8312, "roc_auc_nested_std": 0.021}}
    with_key = write_run(
        tmp_path / "new",
        family="logreg",
        fold_auc=[0.8] * 5,
        predictions=(y, good),
        metrics=nested,
    )
    without = write_run(
        tmp_path / "old", family="logreg", fold_auc=[0.8] * 5, predictions=(y, weak)
    )
    report = compare(
        [load_run(p.name, directory_reader(p)) for p in (with_key, without)], n_resamples=50
    )
    header = next(line for line in report.splitlines() if line.startswith("| run |"))
    column = [cell.strip() for cell in header.split("|")].index("nested CV ROC AUC ± sd")
    cells = {
        line.split("|")[1].strip(): line.split("|")[column].strip()
        for line in report.splitlines()
        if line.startswith("| new |") or line.startswith("| old |")
    }
    assert cells == {"new": "0.8312 ± 0.0210", "old": "–"}


REPORT_FILES = (
    "params.yaml",
    "reports/tuning.json",
    "reports/evaluation.json",
    "reports/test_predictions.csv",
    "reports/metrics.json",
)


def put_run(repo, source):
    for file in REPORT_FILES:
        (repo / file).parent.mkdir(exist_ok=True)
        (repo / file).write_bytes((source / file).read_bytes())


@pytest.mark.integration
def test_experiments_of_an_older_commit_are_compared_with_that_commit(tmp_path):
    """DVC's layout: refs/exps/<baseline[:2]>/<baseline[2:]>/<name>. After a later commit
    the experiments are still listed, each tested against its own baseline (a row)."""
    y, good, weak = scored()
    base_auc = np.random.default_rng(1).normal(0.84, 0.02, 15)
    runs = {
        "base": write_run(
            tmp_path / "base", family="logreg", fold_auc=base_auc, predictions=(y, good)
        ),
        "rf": write_run(
            tmp_path / "rf", family="random_forest", fold_auc=base_auc - 0.01, predictions=(y, weak)
        ),
    }
    repo = tmp_path / "repo"
    git = git_repo(repo)
    put_run(repo, runs["base"])
    git("add", "-A")
    git("commit", "-qm", "baseline with outputs")
    baseline = git("rev-parse", "HEAD")
    put_run(repo, runs["rf"])
    commit_experiment(git, baseline, "rf")
    git("commit", "-q", "--allow-empty", "-m", "later work")

    assert [b.position for b in recent_baselines(repo)] == ["HEAD", "HEAD~1"]
    assert recent_baselines(repo, commits=1)[0].experiments == {}
    output = tmp_path / "comparison.md"
    assert main(["--repo", str(repo), "--resamples", "100", "--output", str(output)]) == 0
    report = output.read_text()
    reference = f"{baseline[:7]} (HEAD~1)"
    assert f"| {reference} | – | logreg |" in report
    assert f"| rf | `{reference}` | random_forest |" in report
    assert f"## Paired tests against `{reference}` (logreg, baseline commit)" in report
    rows = [line for line in report.splitlines() if line.startswith("| rf (random_forest) |")]
    assert [row.split("|")[2].strip() for row in rows] == [
        "CV ROC AUC",
        "CV AP",
        "CV Brier",
        "test ROC AUC",
        "test AP",
        "test Brier",
        "test recall",
        "test specificity",
        "test precision",
    ]
    assert "-0.0100" in rows[0] and rows[0].rstrip(" |").endswith("worse")
    # The workspace holds HEAD's outputs (= the baseline's): not a second row.
    assert "| workspace |" not in report
    # HEAD, a commit without experiments, is a row (a reference), not an untested run.
    assert f"| {baseline[:7]} (HEAD~1) |" in report and "(HEAD) | – |" in report
    assert "Not tested" not in report
    # A bounded history: one commit back finds no experiments, and says how to go further.
    assert main(["--repo", str(repo), "--commits", "1", "--output", str(output)]) == 0
    assert "| rf |" not in output.read_text() and "dvc exp list -A" in output.read_text()
    # Named: the experiment brings its baseline commit along as the reference.
    assert main(["--repo", str(repo), "rf", "--resamples", "50", "--output", str(output)]) == 0
    named = output.read_text()
    assert f"## Paired tests against `{baseline[:7]} (baseline)`" in named
    # An experiment applied to the workspace is that experiment, not a second row.
    put_run(repo, runs["rf"])
    assert main(["--repo", str(repo), "--resamples", "50", "--output", str(output)]) == 0
    assert "The workspace holds the same outputs as `rf`." in output.read_text()
    # Other uncommitted outputs in the workspace: a row, tested against HEAD (its baseline).
    other = write_run(
        tmp_path / "other",
        family="random_forest",
        fold_auc=base_auc + 0.002,
        predictions=(y, weak),
    )
    put_run(repo, other)
    head = subprocess.run(
        ["git", "rev-parse", "--short=7", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    assert main(["--repo", str(repo), "--resamples", "50", "--output", str(output)]) == 0
    with_workspace = output.read_text()
    assert f"| workspace | `{head} (HEAD)` | random_forest |" in with_workspace
    assert f"## Paired tests against `{head} (HEAD)` (logreg, baseline commit)" in with_workspace


def test_experiments_on_other_data_than_their_baseline_are_tested_among_themselves(tmp_path):
    """A `-S data=healthcare` sweep on a brain.csv commit: its runs share no folds with the
    baseline, so they are tested against the best CV ROC AUC of the sweep."""
    y, good, weak = scored()
    auc = np.random.default_rng(2).normal(0.85, 0.02, 15)

    def run(name, data, fold_auc, baseline=None):
        path = write_run(
            tmp_path / name, family="logreg", data=data, fold_auc=fold_auc, predictions=(y, good)
        )
        return load_run(name, directory_reader(path), baseline=baseline)

    runs = [
        run("base", "brain", auc),
        run("h-1", "healthcare", auc + 0.01, baseline="base"),
        run("h-2", "healthcare", auc, baseline="base"),
    ]
    report = compare(runs, n_resamples=50)
    assert "## Paired tests against `h-1` (logreg, best CV ROC AUC on this data)" in report
    assert "| h-2 (logreg) | CV ROC AUC | -0.0100" in report
    assert "Not tested (no reference on the same data and folds): `base`." in report
    with pytest.raises(ComparisonError, match="--reference 'nope'"):
        compare(runs, reference="nope")
