"""Drift statistics against hand-checkable fixtures and scipy."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stroke_risk.data.features import numeric_profile
from stroke_risk.monitoring.drift import (
    PSI_EPSILON,
    categorical_psi,
    category_counts,
    chi_square_pvalue,
    compute_drift,
    feature_drift,
    ks_pvalue,
    numeric_bin_shares,
    population_stability_index,
    unseen_category_rate,
)

# A tiny profile whose numbers can be checked by hand.
NUMERIC_PROFILE: dict[str, Any] = {
    "name": "age",
    "kind": "numeric",
    "missing_rate": 0.0,
    "bin_edges": [10.0, 20.0],
    "bin_shares": [0.25, 0.5, 0.25],
    "category_shares": {},
    "sample": [5.0, 12.0, 15.0, 18.0, 25.0, 30.0],
}
CATEGORICAL_PROFILE: dict[str, Any] = {
    "name": "gender",
    "kind": "categorical",
    "missing_rate": 0.0,
    "bin_edges": [],
    "bin_shares": [],
    "category_shares": {"Female": 0.6, "Male": 0.4, "Other": 0.0},
    "sample": [],
}
BINARY_PROFILE: dict[str, Any] = {
    "name": "hypertension",
    "kind": "binary",
    "missing_rate": 0.0,
    "category_shares": {"0": 0.9, "1": 0.1},
}
TINY_PROFILE = {
    "n_rows": 100,
    "prevalence": 0.05,
    "features": {
        "age": NUMERIC_PROFILE,
        "gender": CATEGORICAL_PROFILE,
        "hypertension": BINARY_PROFILE,
    },
}


def test_psi_of_identical_distributions_is_zero() -> None:
    assert population_stability_index([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_matches_hand_computation() -> None:
    # 0.2 * ln(0.7 / 0.5) + (-0.2) * ln(0.3 / 0.5)
    expected = 0.2 * math.log(1.4) - 0.2 * math.log(0.6)
    assert population_stability_index([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    assert expected == pytest.approx(0.16946, abs=1e-5)


def test_psi_floors_empty_bins_at_epsilon() -> None:
    value = population_stability_index([0.5, 0.5], [1.0, 0.0])
    expected = 0.5 * math.log(1.0 / 0.5) + (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5)
    assert math.isfinite(value)
    assert value == pytest.approx(expected)
    # A larger epsilon shrinks the penalty of the empty bin.
    assert population_stability_index([0.5, 0.5], [1.0, 0.0], epsilon=0.01) < value


def test_psi_rejects_misaligned_bins() -> None:
    with pytest.raises(ValueError, match="length"):
        population_stability_index([0.5, 0.5], [1.0])


def test_numeric_bins_put_values_on_an_edge_in_the_upper_bin() -> None:
    # Edges [10, 20]: bins (-inf, 10), [10, 20), [20, inf).
    assert numeric_bin_shares([9.99, 10.0, 19.99, 20.0], [10.0, 20.0]) == [0.25, 0.5, 0.25]
    assert numeric_bin_shares([], [10.0, 20.0]) == [0.0, 0.0, 0.0]


def test_numeric_bins_agree_with_the_reference_profile_builder() -> None:
    # Binning the training column itself must reproduce the profile's bin shares exactly,
    # otherwise PSI would report drift on the training data.
    values = pd.Series(np.random.default_rng(3).gamma(2.0, 20.0, size=2000).round(1))
    profile = numeric_profile("x", values, seed=0)
    shares = numeric_bin_shares(values.tolist(), profile.bin_edges)
    assert shares == pytest.approx(profile.bin_shares, abs=1e-6)
    assert population_stability_index(profile.bin_shares, shares) == pytest.approx(0.0, abs=1e-9)


def test_ks_pvalue_is_scipys() -> None:
    live = [1.0, 2.0, 3.0, 4.0, 40.0]
    sample = NUMERIC_PROFILE["sample"]
    assert ks_pvalue(live, sample) == pytest.approx(stats.ks_2samp(live, sample).pvalue)
    assert ks_pvalue([], sample) is None


def test_chi_square_pvalue_is_scipys_contingency_test() -> None:
    counts = {"Female": 10, "Male": 30}
    reference_rows = 100
    table = np.array([[60, 40], [10, 30]])
    expected = stats.chi2_contingency(table).pvalue
    assert chi_square_pvalue(counts, CATEGORICAL_PROFILE["category_shares"], reference_rows) == (
        pytest.approx(expected)
    )
    assert expected < 0.01


def test_chi_square_counts_a_category_missing_from_the_reference() -> None:
    counts = {"Female": 55, "Male": 40, "Martian": 5}
    table = np.array([[60, 40, 0], [55, 40, 5]])
    expected = stats.chi2_contingency(table).pvalue
    assert chi_square_pvalue(counts, CATEGORICAL_PROFILE["category_shares"], 100) == (
        pytest.approx(expected)
    )


def test_chi_square_degenerate_cases() -> None:
    shares = CATEGORICAL_PROFILE["category_shares"]
    assert chi_square_pvalue({}, shares, 100) is None
    # Only one category anywhere: nothing to compare, no evidence of drift.
    assert chi_square_pvalue({"A": 5}, {"A": 1.0}, 100) == 1.0


def test_categorical_psi_over_union_of_categories() -> None:
    shares = {"Female": 0.6, "Male": 0.4, "Other": 0.0}
    assert categorical_psi({"Female": 6, "Male": 4}, shares) == pytest.approx(0.0)
    drifted = categorical_psi({"Female": 5, "Male": 4, "Martian": 1}, shares)
    expected = population_stability_index([0.6, 0.4, 0.0, 0.0], [0.5, 0.4, 0.0, 0.1])
    assert drifted == pytest.approx(expected)


def test_unseen_categories_are_zero_share_or_absent_ones() -> None:
    shares = CATEGORICAL_PROFILE["category_shares"]
    counts = {"Female": 6, "Male": 2, "Other": 1, "Martian": 1}
    assert unseen_category_rate(counts, shares) == pytest.approx(0.2)
    assert unseen_category_rate({}, shares) == 0.0


def test_binary_values_match_profile_keys() -> None:
    assert category_counts([0, 1, 1, 1.0, True]) == {"0": 1, "1": 4}
    drift = feature_drift(BINARY_PROFILE, [0] * 9 + [1], reference_rows=100)
    assert drift.psi == pytest.approx(0.0)
    assert drift.unseen_category_rate == 0.0


def test_missing_values_are_counted_and_excluded_from_psi() -> None:
    values = [15.0, None, float("nan"), 5.0, 25.0, 12.0]
    drift = feature_drift(NUMERIC_PROFILE, values, reference_rows=100)
    assert drift.missing_rate == pytest.approx(2 / 6)
    assert drift.values == 4
    assert drift.psi == pytest.approx(0.0)  # 1/4, 2/4, 1/4 is the reference exactly
    assert drift.test == "ks"
    assert drift.unseen_category_rate is None


def test_compute_drift_on_tiny_window() -> None:
    records = [
        {"age": 5.0, "gender": "Female", "hypertension": 0},
        {"age": 15.0, "gender": "Male", "hypertension": 0},
        {"age": 15.0, "gender": "Other", "hypertension": 1},
        {"gender": "Female", "hypertension": 0},  # age absent counts as missing
    ]
    report = compute_drift(TINY_PROFILE, records)
    assert report.window_records == 4
    assert list(report.features) == ["gender", "age", "hypertension"]  # schema order
    assert report.features["age"].missing_rate == 0.25
    assert report.features["gender"].unseen_category_rate == 0.25
    assert report.features["gender"].test == "chi2"
    assert report.drift_score == max(f.psi for f in report.features.values() if f.psi is not None)


def test_empty_window_has_no_statistics() -> None:
    report = compute_drift(TINY_PROFILE, [])
    assert report.window_records == 0
    assert report.drift_score is None
    assert all(f.psi is None and f.pvalue is None for f in report.features.values())


def test_all_missing_feature_has_no_psi_but_full_missing_rate() -> None:
    records = [{"age": None, "gender": "Female", "hypertension": 0}] * 3
    age = compute_drift(TINY_PROFILE, records).features["age"]
    assert age.psi is None and age.pvalue is None and age.missing_rate == 1.0


def test_training_sample_shows_no_drift(
    reference_profile: dict[str, Any], training_records: list[dict[str, Any]]
) -> None:
    rng = np.random.default_rng(0)
    window = [training_records[i] for i in rng.choice(len(training_records), 1000, replace=False)]
    report = compute_drift(reference_profile, window)
    assert report.drift_score is not None and report.drift_score < 0.1
    assert all(f.unseen_category_rate in (None, 0.0) for f in report.features.values())


def test_shifted_age_is_flagged_and_other_features_are_not(
    reference_profile: dict[str, Any], training_records: list[dict[str, Any]]
) -> None:
    window = [dict(r, age=min(r["age"] + 25, 120.0)) for r in training_records[:1000]]
    report = compute_drift(reference_profile, window)
    age = report.features["age"]
    assert age.psi is not None and age.psi > 0.2
    assert age.pvalue is not None and age.pvalue < 1e-6
    assert report.drift_score == age.psi
    assert report.features["gender"].psi is not None and report.features["gender"].psi < 0.1


def test_smokers_only_window_flags_smoking_status(
    reference_profile: dict[str, Any], training_records: list[dict[str, Any]]
) -> None:
    window = [dict(r, smoking_status="smokes") for r in training_records[:500]]
    smoking = compute_drift(reference_profile, window).features["smoking_status"]
    assert smoking.psi is not None and smoking.psi > 1.0
    assert smoking.pvalue is not None and smoking.pvalue < 1e-6
    assert smoking.unseen_category_rate == 0.0
