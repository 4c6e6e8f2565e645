"""The glass-box families: monotone, additive, and their constraints wired to the columns."""

import numpy as np
import pytest
from scipy.special import logit

from stroke_risk.data.features import FeatureConfig
from stroke_risk.models.pipelines import (
    FEATURE_SETS,
    MONOTONE_INCREASING,
    build_model_pipeline,
    build_preprocessor,
    monotonic_constraints,
)

HGB_PARAMS = {
    "early_stopping": False,
    "max_iter": 60,
    "learning_rate": 0.1,
    "max_leaf_nodes": 6,
    "min_samples_leaf": 20,
    "feature_set": "monotone",
}
EBM_PARAMS = {"n_jobs": 1, "outer_bags": 2, "max_rounds": 300, "feature_set": "monotone"}


@pytest.fixture(scope="module")
def hgb(featurized):
    frame, y = featurized
    return build_model_pipeline(
        "hgb_monotonic", HGB_PARAMS, feature_config=FeatureConfig(), seed=0
    ).fit(frame, y)


@pytest.fixture(scope="module")
def ebm(featurized):
    frame, y = featurized
    params = {**EBM_PARAMS, "interactions": 5}  # asked for, but never allowed
    return build_model_pipeline("ebm", params, feature_config=FeatureConfig(), seed=0).fit(frame, y)


@pytest.mark.parametrize("name", ["compact", "monotone"])
def test_constraints_line_up_with_the_preprocessed_columns(featurized, name):
    frame, _ = featurized
    feature_set = FEATURE_SETS[name]
    preprocessor = build_preprocessor(feature_set, FeatureConfig()).fit(frame)
    columns = [c.split("__", 1)[1] for c in preprocessor.get_feature_names_out()]
    constraints = monotonic_constraints(feature_set, FeatureConfig())
    assert len(constraints) == len(columns)
    assert [c for c, cst in zip(columns, constraints, strict=True) if cst] == [
        c for c in columns if c in MONOTONE_INCREASING
    ]
    assert {"age", "hypertension", "heart_disease"} <= {
        c for c, cst in zip(columns, constraints, strict=True) if cst == 1
    }


def test_age_bands_cannot_be_monotone():
    with pytest.raises(ValueError, match="age_band.*compact.*monotone"):
        build_model_pipeline(
            "hgb_monotonic", {"feature_set": "full"}, feature_config=FeatureConfig(), seed=0
        )


def with_engineered(frame, column, values):
    """Copies of frame's rows with one raw field set to each value, features recomputed."""
    from stroke_risk.data.features import add_engineered_features
    from stroke_risk.data.schema import FEATURE_NAMES

    raw = frame[list(FEATURE_NAMES)]
    out = []
    for value in values:
        changed = raw.copy()
        changed[column] = value
        out.append(add_engineered_features(changed, FeatureConfig()))
    return out


@pytest.mark.parametrize(
    "column, values",
    [
        ("age", np.linspace(0, 100, 21)),
        ("avg_glucose_level", np.linspace(55, 270, 21)),
        ("hypertension", [0, 1]),
        ("heart_disease", [0, 1]),
    ],
)
def test_hgb_risk_never_falls_along_the_constrained_fields(hgb, featurized, column, values):
    frame, _ = featurized
    patients = frame.sample(200, random_state=1)
    risks = np.column_stack(
        [hgb.predict_proba(f)[:, 1] for f in with_engineered(patients, column, values)]
    )
    assert (np.diff(risks, axis=1) >= -1e-12).all()
    assert (np.diff(risks, axis=1) > 1e-6).any()  # the field is used, not constant


def test_hgb_trees_use_one_column_each(hgb):
    """No interactions: the log-odds are a sum of per-column functions (exact contributions)."""
    for iteration in hgb[-1]._predictors:
        for tree in iteration:
            splits = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
            assert len(set(splits["feature_idx"].tolist())) <= 1


def test_ebm_is_exactly_additive_without_interactions(ebm, featurized):
    frame, _ = featurized
    model = ebm[-1]
    assert all(len(term) == 1 for term in model.term_features_)
    transformed = ebm[0].transform(frame.iloc[:50])
    contributions = model.eval_terms(transformed)
    log_odds = logit(ebm.predict_proba(frame.iloc[:50])[:, 1])
    assert contributions.sum(axis=1) + model.intercept_[0] == pytest.approx(log_odds, abs=1e-9)
