import numpy as np
import pandas as pd

from stroke_risk.data.features import (
    FeatureConfig,
    FeatureEngineer,
    add_engineered_features,
    band_labels,
    build_reference_profile,
    cut_bands,
)
from stroke_risk.data.schema import FEATURE_NAMES, TARGET


def test_band_labels_and_cuts_are_half_open():
    edges = (18.0, 40.0)
    assert band_labels(edges) == ["<18", "18-40", "40+"]
    values = pd.Series([0.08, 17.9, 18.0, 39.99, 40.0, np.nan])
    assert cut_bands(values, edges).tolist() == ["<18", "<18", "18-40", "18-40", "40+", "unknown"]


def test_engineered_features_are_row_wise(brain_frame):
    config = FeatureConfig(high_glucose_cut=150.0)
    head = brain_frame.head(50)
    featurized = add_engineered_features(head, config)
    assert np.allclose(featurized["log_avg_glucose_level"], np.log(head["avg_glucose_level"]))
    assert (featurized["high_glucose"] == (head["avg_glucose_level"] >= 150)).all()
    # Row-wise: featurizing a subset gives the same rows as featurizing the whole.
    subset = add_engineered_features(head.iloc[10:20], config)
    pd.testing.assert_frame_equal(subset, featurized.iloc[10:20])
    assert list(head.columns) == list(brain_frame.columns)  # input not mutated


def test_feature_engineer_has_no_fitted_state(brain_frame):
    engineer = FeatureEngineer(FeatureConfig())
    raw = brain_frame[list(FEATURE_NAMES)].head(20)
    fitted_on_other = FeatureEngineer(FeatureConfig()).fit(brain_frame.tail(100))
    pd.testing.assert_frame_equal(engineer.transform(raw), fitted_on_other.transform(raw))


def test_reference_profile_shares_sum_to_one(brain_frame):
    profile = build_reference_profile(brain_frame, target=TARGET, seed=0)
    assert profile["n_rows"] == len(brain_frame)
    assert abs(profile["prevalence"] - brain_frame[TARGET].mean()) < 1e-6
    for name in FEATURE_NAMES:
        feature = profile["features"][name]
        shares = feature["bin_shares"] or list(feature["category_shares"].values())
        assert abs(sum(shares) - 1.0) < 1e-4, name
    age = profile["features"]["age"]
    assert len(age["bin_shares"]) == len(age["bin_edges"]) + 1
    assert age["sample"] == sorted(age["sample"])
    assert profile["features"]["gender"]["category_shares"]["Other"] == 0.0
    assert set(profile["features"]["hypertension"]["category_shares"]) == {"0", "1"}


def test_reference_profile_is_seeded(brain_frame):
    first = build_reference_profile(brain_frame, target=TARGET, seed=3)
    second = build_reference_profile(brain_frame, target=TARGET, seed=3)
    assert first == second
