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

from stroke_risk.evaluation.metrics import (
    all_metrics,
    bootstrap_intervals,
    calibration_table,
    expected_calibration_error,
    metrics_with_intervals,
    probability_metrics,
    resample_weights,
    subgroup_metrics,
    threshold_metrics,
    weighted_metrics,
    weighted_ranking_metrics,
)
from stroke_risk.evaluation.thresholds import (
    THRESHOLD_POLICIES,
    THRESHOLD_POLICY_NAMES,
    select_threshold,
)
from stroke_risk.params import ParamsError, ThresholdParams, read_section


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


# Each policy's objective written the slow, obvious way (a candidate's value; higher wins).
# A policy added to the table without one here fails test_threshold_selection_matches_brute_force.
BRUTE_FORCE_OBJECTIVES = {
    "min_recall": lambda y, p, t, m: t if m["recall"] >= 0.8 else -np.inf,
    "max_f1": lambda y, p, t, m: m["f1"],
    "youden": lambda y, p, t, m: m["recall"] + m["specificity"] - 1,
    "net_benefit": lambda y, p, t, m: (
        np.mean((p >= t) & (y == 1)) - np.mean((p >= t) & (y == 0)) * 0.05
    ),
}


def brute_force_threshold(y, p, policy):
    objective = BRUTE_FORCE_OBJECTIVES[policy]
    best, best_value = None, -np.inf
    for candidate in np.unique(p):
        value = objective(y, p, candidate, threshold_metrics(y, p, candidate))
        # ties: prefer the higher threshold, as select_threshold scans from the top
        if value > best_value or (value == best_value and candidate > best):
            best, best_value = candidate, value
    return best


@pytest.mark.parametrize("policy", THRESHOLD_POLICY_NAMES)
def test_threshold_selection_matches_brute_force(scored, policy):
    y, p = scored
    chosen = select_threshold(y, p, policy=policy, target_recall=0.8, harm_benefit_ratio=0.05)
    assert chosen == pytest.approx(brute_force_threshold(y, p, policy))


def test_params_accept_exactly_the_policies_of_the_table():
    for name in THRESHOLD_POLICY_NAMES:
        section = {"policy": name, "target_recall": 0.8, "harm_benefit_ratio": 0.05}
        assert read_section({"threshold": section}, "threshold", ThresholdParams).policy == name
    with pytest.raises(ParamsError, match="threshold.policy.*'min_recall', 'max_f1'"):
        read_section(
            {"threshold": {"policy": "magic", "target_recall": 0.8, "harm_benefit_ratio": 0.05}},
            "threshold",
            ThresholdParams,
        )


@pytest.mark.parametrize("policy", THRESHOLD_POLICY_NAMES)
def test_each_policy_reads_a_real_setting_and_explains_itself(policy):
    record = THRESHOLD_POLICIES[policy]
    assert record.name == policy
    if record.setting is not None:
        assert record.setting in ThresholdParams.model_fields
        assert record.setting_label
    sentence = record.clinician_sentence(0.8)
    assert sentence.endswith(".") and "threshold" in sentence


def test_min_recall_threshold_meets_target_and_is_highest(scored):
    y, p = scored
    chosen = select_threshold(y, p, policy="min_recall", target_recall=0.8)
    assert threshold_metrics(y, p, chosen)["recall"] >= 0.8
    higher = p[p > chosen].min()
    assert threshold_metrics(y, p, higher)["recall"] < 0.8


def test_unknown_policy_is_rejected(scored):
    with pytest.raises(ValueError, match="unknown threshold policy"):
        select_threshold(*scored, policy="magic", target_recall=0.8)
    with pytest.raises(ValueError, match="harm_benefit_ratio"):
        select_threshold(*scored, policy="net_benefit", target_recall=0.8)


def test_net_benefit_threshold_sits_near_the_threshold_probability():
    """For calibrated scores the net-benefit optimum is at ratio / (1 + ratio)."""
    rng = np.random.default_rng(0)
    p = rng.beta(0.5, 8, 200_000)
    y = (rng.random(p.size) < p).astype(int)
    chosen = select_threshold(y, p, policy="net_benefit", target_recall=0.8, harm_benefit_ratio=0.1)
    assert chosen == pytest.approx(0.1 / 1.1, abs=0.01)


def test_bootstrap_is_seeded_and_brackets_the_estimate(scored):
    y, p = scored
    first = bootstrap_intervals(y, p, 0.5, n_resamples=200, seed=1)
    second = bootstrap_intervals(y, p, 0.5, n_resamples=200, seed=1)
    other = bootstrap_intervals(y, p, 0.5, n_resamples=200, seed=2)
    assert first == second and first != other
    point = all_metrics(y, p, 0.5)
    for name, (low, high) in first.items():
        assert low <= point[name] <= high, name


def test_resample_weights_count_the_draws():
    weights = resample_weights(7, n_resamples=5, seed=3)
    draws = np.random.default_rng(3).integers(0, 7, size=(5, 7))
    for row, drawn in zip(weights, draws, strict=True):
        assert row.tolist() == np.bincount(drawn, minlength=7).tolist()


def test_weighted_metrics_equal_metrics_of_the_resampled_rows(scored):
    """Each bootstrap value is what sklearn gives on the rows the resample drew."""
    y, p = scored
    weights = resample_weights(len(y), n_resamples=20, seed=11)
    draws = np.random.default_rng(11).integers(0, len(y), size=(20, len(y)))
    batched = weighted_metrics(y, p, 0.5, weights)
    for index, drawn in enumerate(draws):
        t, s = y[drawn], p[drawn]
        predicted = (s >= 0.5).astype(int)
        expected = {
            "roc_auc": roc_auc_score(t, s),
            "average_precision": average_precision_score(t, s),
            "brier": brier_score_loss(t, s),
            "log_loss": log_loss(t, s, labels=[0, 1]),
            "recall": recall_score(t, predicted, zero_division=0),
            "precision": precision_score(t, predicted, zero_division=0),
            "f1": f1_score(t, predicted, zero_division=0),
            "specificity": np.mean(predicted[t == 0] == 0),
            "positive_rate": predicted.mean(),
        }
        for name, value in expected.items():
            assert batched[name][index] == pytest.approx(value, abs=1e-9), name


def test_bootstrap_does_not_fix_the_number_of_positives(scored):
    """Patient resampling: the stroke count varies, so prevalence-dependent metrics vary."""
    y, _ = scored
    weights = resample_weights(len(y), n_resamples=200, seed=0)
    positives = weights @ y
    assert positives.std() > 1 and positives.min() < y.sum() < positives.max()


def test_ranking_metrics_are_nan_without_both_classes():
    auc, ap = weighted_ranking_metrics(
        np.array([0, 0, 1]), np.array([0.1, 0.2, 0.3]), np.array([[1.0, 2.0, 0.0]])
    )
    assert np.isnan(auc[0]) and np.isnan(ap[0])


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
    table = subgroup_metrics(y, p, groups, threshold=0.5, n_resamples=50, seed=0)
    assert table["a"]["roc_auc"]["value"] == 1.0 and table["a"]["n"] == 3
    assert table["b"]["roc_auc"] == {"value": None, "ci_low": None, "ci_high": None}
    assert table["b"]["positives"] == 0 and table["b"]["recall"]["value"] is None
    assert table["a"]["too_few_positives"] and table["b"]["too_few_positives"]


def test_subgroup_intervals_bracket_the_estimates(scored):
    y, p = scored
    groups = np.where(np.arange(len(y)) % 2 == 0, "even", "odd")
    table = subgroup_metrics(y, p, groups, threshold=0.5, n_resamples=200, seed=0, min_positives=5)
    for group, row in table.items():
        assert row["positives"] == int(y[groups == group].sum())
        assert row["too_few_positives"] == (row["positives"] < 5)
        for name in ("roc_auc", "recall", "precision", "brier", "mean_probability"):
            entry = row[name]
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], (group, name)
            assert entry["ci_low"] < entry["ci_high"], (group, name)


def test_baselines_use_training_statistics_only():
    import pandas as pd

    from stroke_risk.evaluation.metrics import baseline_metrics

    train = pd.DataFrame({"age": [20.0, 30.0, 70.0, 80.0], "stroke": [0, 0, 1, 1]})
    test = pd.DataFrame({"age": [25.0, 75.0, 78.0], "stroke": [0, 1, 0]})
    baselines = baseline_metrics(train, test, target="stroke")
    assert baselines["prevalence"]["roc_auc"] == 0.5
    # The constant is the training prevalence (0.5), not the test's (1/3).
    assert baselines["prevalence"]["brier"] == pytest.approx(0.25)
    assert baselines["age_only"]["roc_auc"] == pytest.approx(0.5)


def test_plot_tables_match_the_decision_rule(scored):
    from stroke_risk.evaluation.metrics import plot_tables

    y, p = scored
    tables = plot_tables(
        y, p, 0.5, calibration=calibration_table(y, p, n_bins=5), importance={"a": 0.1, "b": 0.3}
    )
    assert set(tables) == {"roc", "pr", "calibration", "confusion", "importance"}
    assert (tables["confusion"]["predicted"] == (p >= 0.5)).all()
    assert tables["importance"]["feature"].tolist() == ["b", "a"]
    assert tables["roc"]["fpr"].is_monotonic_increasing
