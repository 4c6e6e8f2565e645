import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from stroke_risk.evaluation import (
    bootstrap_intervals,
    calibration_table,
    expected_calibration_error,
    metrics_with_intervals,
    probability_metrics,
    select_threshold,
    subgroup_metrics,
    threshold_metrics,
)


@pytest.fixture(params=[0, 1, 2])
def scored(request):
    rng = np.random.default_rng(request.param)
    y = (rng.random(400) < 0.1).astype(int)
    # Rounded scores create ties, which is where hand-written AUC/AP usually go wrong.
    p = np.clip(np.round(0.3 * y + rng.random(400) * 0.7, 2), 0.001, 0.999)
    return y, p


def test_probability_metrics_match_sklearn(scored):
    y, p = scored
    metrics = probability_metrics(y, p)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert metrics["average_precision"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert metrics["log_loss"] == pytest.approx(log_loss(y, p), abs=1e-9)


def test_threshold_metrics_match_sklearn(scored):
    y, p = scored
    for threshold in (0.2, 0.5, 0.9, 1.1):
        metrics = threshold_metrics(y, p, threshold)
        predicted = (p >= threshold).astype(int)
        assert metrics["recall"] == pytest.approx(recall_score(y, predicted, zero_division=0))
        assert metrics["precision"] == pytest.approx(precision_score(y, predicted, zero_division=0))
        assert metrics["f1"] == pytest.approx(f1_score(y, predicted, zero_division=0))
        assert metrics["specificity"] == pytest.approx(np.mean(predicted[y == 0] == 0))


def brute_force_threshold(y, p, policy, target):
    best, best_value = None, -np.inf
    for candidate in np.unique(p):
        m = threshold_metrics(y, p, candidate)
        if policy == "min_recall":
            value = candidate if m["recall"] >= target else -np.inf
        elif policy == "max_f1":
            value = m["f1"]
        else:
            value = m["recall"] + m["specificity"] - 1
        # ties: prefer the higher threshold, as select_threshold scans from the top
        if value > best_value or (value == best_value and candidate > best):
            best, best_value = candidate, value
    return best


@pytest.mark.parametrize("policy", ["min_recall", "max_f1", "youden"])
def test_threshold_selection_matches_brute_force(scored, policy):
    y, p = scored
    chosen = select_threshold(y, p, policy=policy, target_recall=0.8)
    assert chosen == pytest.approx(brute_force_threshold(y, p, policy, 0.8))


def test_min_recall_threshold_meets_target_and_is_highest(scored):
    y, p = scored
    chosen = select_threshold(y, p, policy="min_recall", target_recall=0.8)
    assert threshold_metrics(y, p, chosen)["recall"] >= 0.8
    higher = p[p > chosen].min()
    assert threshold_metrics(y, p, higher)["recall"] < 0.8


def test_unknown_policy_is_rejected(scored):
    with pytest.raises(ValueError, match="unknown threshold policy"):
        select_threshold(*scored, policy="magic", target_recall=0.8)


def test_bootstrap_is_seeded_and_brackets_the_estimate(scored):
    y, p = scored
    first = bootstrap_intervals(y, p, probability_metrics, n_resamples=200, seed=1)
    second = bootstrap_intervals(y, p, probability_metrics, n_resamples=200, seed=1)
    other = bootstrap_intervals(y, p, probability_metrics, n_resamples=200, seed=2)
    assert first == second and first != other
    point = probability_metrics(y, p)
    for name, (low, high) in first.items():
        assert low <= point[name] <= high, name


def test_bootstrap_matches_a_direct_stratified_resample(scored):
    y, p = scored
    intervals = bootstrap_intervals(
        y, p, lambda t, s: {"auc": roc_auc_score(t, s)}, n_resamples=100, seed=5
    )
    rng = np.random.default_rng(5)
    pos, neg = np.nonzero(y == 1)[0], np.nonzero(y == 0)[0]
    values = []
    for _ in range(100):
        index = np.concatenate(
            [rng.choice(pos, len(pos), replace=True), rng.choice(neg, len(neg), replace=True)]
        )
        values.append(roc_auc_score(y[index], p[index]))
    assert intervals["auc"] == pytest.approx(
        (np.quantile(values, 0.025), np.quantile(values, 0.975))
    )


def test_metrics_with_intervals_shape(scored):
    y, p = scored
    table = metrics_with_intervals(y, p, 0.5, n_resamples=50, seed=0)
    assert {"roc_auc", "average_precision", "brier", "recall", "precision", "f1"} <= set(table)
    assert all(set(entry) == {"value", "ci_low", "ci_high"} for entry in table.values())


def test_calibration_and_ece():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.0, 0.0, 1.0, 1.0])
    table = calibration_table(y, p, n_bins=2)
    assert [row["count"] for row in table] == [2, 2]
    assert expected_calibration_error(table) == 0.0
    skewed = calibration_table(y, np.array([0.5, 0.5, 0.5, 0.5]), n_bins=1)
    assert expected_calibration_error(skewed) == pytest.approx(0.0)
    off = calibration_table(np.array([0, 0, 0, 0]), np.array([0.2, 0.2, 0.4, 0.4]), n_bins=2)
    assert expected_calibration_error(off) == pytest.approx(0.3)


def test_subgroup_metrics_handle_single_class_groups():
    y = np.array([0, 1, 0, 0, 0])
    p = np.array([0.1, 0.9, 0.2, 0.3, 0.4])
    groups = np.array(["a", "a", "a", "b", "b"])
    table = subgroup_metrics(y, p, groups, threshold=0.5)
    assert table["a"]["roc_auc"] == 1.0 and table["a"]["n"] == 3
    assert table["b"]["roc_auc"] is None and table["b"]["positives"] == 0


def test_baselines_use_training_statistics_only():
    import pandas as pd

    from stroke_risk.evaluation import baseline_metrics

    train = pd.DataFrame({"age": [20.0, 30.0, 70.0, 80.0], "stroke": [0, 0, 1, 1]})
    test = pd.DataFrame({"age": [25.0, 75.0, 78.0], "stroke": [0, 1, 0]})
    baselines = baseline_metrics(train, test, target="stroke")
    assert baselines["prevalence"]["roc_auc"] == 0.5
    # The constant is the training prevalence (0.5), not the test's (1/3).
    assert baselines["prevalence"]["brier"] == pytest.approx(0.25)
    assert baselines["age_only"]["roc_auc"] == pytest.approx(0.5)


def test_plot_tables_match_the_decision_rule(scored):
    from stroke_risk.evaluation import plot_tables

    y, p = scored
    tables = plot_tables(
        y, p, 0.5, calibration=calibration_table(y, p, n_bins=5), importance={"a": 0.1, "b": 0.3}
    )
    assert set(tables) == {"roc", "pr", "calibration", "confusion", "importance"}
    assert (tables["confusion"]["predicted"] == (p >= 0.5)).all()
    assert tables["importance"]["feature"].tolist() == ["b", "a"]
    assert tables["roc"]["fpr"].is_monotonic_increasing
