"""Paired comparisons: the corrected t-test, the paired bootstrap, and the command."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from sklearn.metrics import roc_auc_score

from stroke_risk.comparison import (
    ComparisonError,
    compare,
    corrected_resampled_ttest,
    directory_reader,
    experiment_revisions,
    load_run,
    main,
    paired_bootstrap,
)


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


def write_run(root, *, family, data="brain", fold_auc, predictions, cv_seed=42):
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
    }
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
    assert "| lr | logreg | brain |" in report and "| hc | logreg | healthcare |" in report
    assert "## Paired tests on `brain` against `lr` (logreg)" in report
    row = next(
        line for line in report.splitlines() if line.startswith("| rf (random_forest) | ROC AUC")
    )
    assert "-0.0100" in row  # the CV folds differ by exactly 0.01
    assert "Not tested (no other run on the same data and folds): `hc`." in report


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


def test_experiments_are_found_by_their_git_refs(three_runs, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    (repo / "README").write_text("base")
    git("add", "-A")
    git("commit", "-qm", "base")
    head = git("rev-parse", "HEAD")
    for path in three_runs[:2]:
        for file in (
            "params.yaml",
            "reports/tuning.json",
            "reports/evaluation.json",
            "reports/test_predictions.csv",
        ):
            (repo / file).parent.mkdir(exist_ok=True)
            (repo / file).write_bytes((path / file).read_bytes())
        git("add", "-A")
        git("commit", "-qm", path.name)
        git("update-ref", f"refs/exps/{head[:2]}/{head[2:]}/{path.name}", "HEAD")
    git("reset", "-q", "--hard", head)
    assert list(experiment_revisions(repo)) == ["lr", "rf"]
    code = main(["--repo", str(repo), "lr", "rf", "--resamples", "100"])
    assert code == 0
