"""Explanations add up to the model's logit, map to raw fields and rank deterministically."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xgboost

from stroke_risk.data.features import ENGINEERED_FEATURES, FeatureConfig
from stroke_risk.data.load import load_dataset
from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.models.explain import (
    ENGINEERED_SOURCES,
    FOREST_PROBABILITY_FLOOR,
    PipelineExplainer,
    explain,
    explain_prediction,
    explainer_for,
    model_logit,
    source_field,
    top_risk_factors,
    top_risk_factors_batch,
    transformed_sources,
)
from stroke_risk.models.families import FAMILIES
from stroke_risk.models.pipelines import (
    FEATURE_SETS,
    build_model_pipeline,
    build_serving_pipeline,
)
from tests.conftest import HEALTHCARE_CSV

# Each family's small configuration (its record in stroke_risk.models.families); the forest
# is deep with small leaves here, so many leaves predict exactly 0 and the logit clipping runs.
SMALL_PARAMS = {
    **{name: dict(family.small_params) for name, family in FAMILIES.items()},
    "random_forest": {"n_estimators": 40, "max_depth": 10, "min_samples_leaf": 2, "n_jobs": 1},
}


@pytest.fixture(scope="module")
def explain_rows(brain_frame) -> pd.DataFrame:
    """Rows to explain: brain.csv plus the original file (missing bmi, gender 'Other')."""
    healthcare = load_dataset(HEALTHCARE_CSV)
    rows = pd.concat([brain_frame.sample(1500, random_state=0), healthcare], ignore_index=True)
    return rows[list(FEATURE_NAMES)]


_PIPELINES: dict[tuple[str, str], object] = {}


def serving_pipeline(featurized, family: str, feature_set: str):
    """A fitted serving pipeline per (family, feature set), fitted once per session."""
    key = (family, feature_set)
    if key not in _PIPELINES:
        X, y = featurized
        if feature_set == "full":
            feature_set = FAMILIES[family].widest_feature_set  # bands cannot be monotone
        params = {**SMALL_PARAMS[family], "feature_set": feature_set}
        config = FeatureConfig()
        fitted = build_model_pipeline(family, params, feature_config=config, seed=0).fit(X, y)
        _PIPELINES[key] = build_serving_pipeline(fitted, config)
    return _PIPELINES[key]


def reference_logit(pipeline, frame: pd.DataFrame) -> np.ndarray:
    """log(p / (1 - p)) of predict_proba, computed independently of the explain module."""
    probability = pipeline.predict_proba(frame)[:, 1].astype(np.float64)
    if type(pipeline.steps[-1][1]).__name__ == "RandomForestClassifier":
        probability = np.clip(probability, 1e-6, 1 - 1e-6)
    return np.log(probability / (1 - probability))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
def test_contributions_sum_to_the_model_logit(featurized, explain_rows, family, feature_set):
    pipeline = serving_pipeline(featurized, family, feature_set)
    base_value, contributions = explain(pipeline, explain_rows)
    assert list(contributions.columns) == list(FEATURE_NAMES)
    assert contributions.index.equals(explain_rows.index)
    assert np.isfinite(contributions.to_numpy()).all()
    total = base_value + contributions.sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, reference_logit(pipeline, explain_rows), rtol=0, atol=1e-6)
    np.testing.assert_allclose(model_logit(pipeline, explain_rows), total, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_explained_probability_is_predict_proba(featurized, explain_rows, family):
    pipeline = serving_pipeline(featurized, family, "full")
    explanation = explain_prediction(pipeline, explain_rows)
    reference = pipeline.predict_proba(explain_rows)[:, 1]
    np.testing.assert_allclose(explanation.probability, reference, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        explanation.logit, explanation.base_value + explanation.contributions.sum(axis=1)
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_unused_fields_contribute_nothing(featurized, explain_rows, family):
    pipeline = serving_pipeline(featurized, family, "compact")
    _, contributions = explain(pipeline, explain_rows)
    used = {source_field(c) for c in FEATURE_SETS["compact"].columns}
    unused = [name for name in FEATURE_NAMES if name not in used]
    assert unused, "the compact set should leave some fields out"
    assert (contributions[unused] == 0).all().all()
    assert (contributions[sorted(used)].abs().sum() > 0).all()


def test_forest_rows_with_probability_zero_are_explained(featurized, explain_rows):
    pipeline = serving_pipeline(featurized, "random_forest", "full")
    probability = pipeline.predict_proba(explain_rows)[:, 1]
    assert (probability == 0).any(), "fixture should produce forest probabilities of 0"
    base_value, contributions = explain(pipeline, explain_rows)
    zero = probability == 0
    floor_logit = math.log(FOREST_PROBABILITY_FLOOR / (1 - FOREST_PROBABILITY_FLOOR))
    np.testing.assert_allclose(
        base_value + contributions[zero].sum(axis=1), floor_logit, rtol=0, atol=1e-6
    )


def test_forest_base_value_is_the_mean_root_rate(featurized):
    pipeline = serving_pipeline(featurized, "random_forest", "full")
    forest = pipeline.named_steps["model"]
    roots = [tree.tree_.value[0, 0, 1] / tree.tree_.value[0, 0].sum() for tree in forest]
    base_value = explainer_for(pipeline).base_value
    assert base_value == pytest.approx(math.log(np.mean(roots) / (1 - np.mean(roots))))


def test_xgboost_residual_spread_is_only_float32_rounding(featurized, explain_rows):
    pipeline = serving_pipeline(featurized, "xgboost", "full")
    matrix = pipeline[:-1].transform(explain_rows)
    raw = (
        pipeline.named_steps["model"]
        .get_booster()
        .predict(xgboost.DMatrix(matrix), pred_contribs=True, approx_contribs=True)
    )
    residual = raw.astype(np.float64).sum(axis=1) - reference_logit(pipeline, explain_rows)
    assert np.abs(residual).max() < 1e-4
    _, contributions = explain(pipeline, explain_rows)
    aggregated = pd.DataFrame(raw[:, :-1], columns=explainer_for(pipeline).sources)
    aggregated = aggregated.T.groupby(level=0).sum().T[list(FEATURE_NAMES)]
    np.testing.assert_allclose(contributions.to_numpy(), aggregated.to_numpy(), atol=1e-4)


def test_logreg_contribution_is_coefficient_times_value(featurized, explain_rows):
    pipeline = serving_pipeline(featurized, "logreg", "compact")
    model = pipeline.named_steps["model"]
    sources = explainer_for(pipeline).sources
    base_value, contributions = explain(pipeline, explain_rows)
    assert base_value == model.intercept_[0]
    # hypertension is one passthrough column: its contribution is the coefficient or 0
    coefficient = model.coef_[0][sources.index("hypertension")]
    expected = coefficient * explain_rows["hypertension"].to_numpy()
    np.testing.assert_allclose(contributions["hypertension"], expected, atol=1e-12)


def test_logreg_numeric_field_at_training_mean_contributes_zero(featurized, brain_frame):
    pipeline = serving_pipeline(featurized, "logreg", "compact")
    scaler = pipeline.named_steps["preprocess"].named_transformers_["numeric"]["scale"]
    age_mean = scaler.mean_[list(FEATURE_SETS["compact"].numeric).index("age")]
    row = brain_frame[list(FEATURE_NAMES)].head(1).assign(age=age_mean)
    _, contributions = explain(pipeline, row)
    assert contributions.loc[row.index[0], "age"] == pytest.approx(0, abs=1e-12)


def test_full_feature_set_maps_every_column_to_its_field(featurized):
    pipeline = serving_pipeline(featurized, "logreg", "full")
    preprocess = pipeline.named_steps["preprocess"]
    sources = transformed_sources(preprocess)
    assert len(sources) == len(preprocess.get_feature_names_out())
    counts = pd.Series(sources).value_counts()
    # age, age_squared, age_band (5 bands + unknown)
    assert counts["age"] == 2 + 6
    # avg_glucose_level, log_avg_glucose_level, high_glucose
    assert counts["avg_glucose_level"] == 3
    assert counts["work_type"] == 5  # one-hot over the schema's domain
    assert set(sources) == set(FEATURE_NAMES)


def test_every_engineered_feature_has_a_source_field():
    assert set(ENGINEERED_SOURCES) == set(ENGINEERED_FEATURES)
    for feature_set in FEATURE_SETS.values():
        for column in feature_set.columns:
            assert source_field(column) in FEATURE_NAMES
    with pytest.raises(ValueError, match="does not derive"):
        source_field("cholesterol")


def test_refitting_the_same_pipeline_object_rebuilds_the_explainer(featurized, explain_rows):
    X, y = featurized
    config = FeatureConfig()
    fitted = build_model_pipeline("logreg", SMALL_PARAMS["logreg"], feature_config=config, seed=0)
    pipeline = build_serving_pipeline(fitted.fit(X, y), config)
    rows = explain_rows.head(50)
    before, _ = explain(pipeline, rows)
    model = pipeline.named_steps["model"]
    model.set_params(C=0.001)
    pipeline[1:].fit(X, y)  # refits the same estimator objects in place
    assert pipeline.named_steps["model"] is model
    base_value, contributions = explain(pipeline, rows)
    assert base_value != before
    np.testing.assert_allclose(
        base_value + contributions.sum(axis=1), reference_logit(pipeline, rows), atol=1e-6
    )


def test_unsupported_model_is_rejected(featurized):
    from sklearn.naive_bayes import GaussianNB

    X, y = featurized
    pipeline = build_model_pipeline(
        "logreg", SMALL_PARAMS["logreg"], feature_config=FeatureConfig(), seed=0
    )
    pipeline.steps[-1] = ("model", GaussianNB())
    pipeline.fit(X, y)
    with pytest.raises(TypeError, match="GaussianNB"):
        PipelineExplainer(pipeline)


def test_design_matrix_of_the_wrong_width_is_rejected(featurized):
    explainer = explainer_for(serving_pipeline(featurized, "logreg", "compact"))
    with pytest.raises(ValueError, match="columns"):
        explainer.explain_matrix(np.zeros((1, 3)))


def test_top_risk_factors_ranks_by_absolute_contribution():
    contributions = dict.fromkeys(FEATURE_NAMES, 0.0) | {
        "age": 1.2,
        "bmi": -2.0,
        "hypertension": 0.3,
        "gender": -0.3,  # ties with hypertension: schema order (gender first) decides
    }
    values = {
        "age": np.float64(67.0),
        "bmi": float("nan"),
        "hypertension": np.int64(1),
        "gender": "Male",
    }
    factors = top_risk_factors(-3.0, contributions, values, k=4)
    assert [f["feature"] for f in factors] == ["bmi", "age", "gender", "hypertension"]
    assert factors[0] == {"feature": "bmi", "value": None, "contribution": -2.0}
    assert factors[1]["value"] == 67.0 and type(factors[1]["value"]) is float
    assert type(factors[3]["value"]) is int
    assert top_risk_factors(-3.0, contributions, values, k=0) == []
    assert len(top_risk_factors(-3.0, contributions, values, k=50)) == len(FEATURE_NAMES)


def test_top_risk_factors_batch_matches_the_single_row_version(featurized, explain_rows):
    pipeline = serving_pipeline(featurized, "xgboost", "full")
    rows = explain_rows.head(30)
    explanation = explain_prediction(pipeline, rows)
    frame = explanation.contributions_frame(index=rows.index)
    batch = top_risk_factors_batch(explanation, rows, k=3)
    assert top_risk_factors_batch(explanation, rows.to_dict(orient="records"), k=3) == batch
    with pytest.raises(ValueError, match="records"):
        top_risk_factors_batch(explanation, rows.head(2), k=3)
    for position, (index, row) in enumerate(rows.iterrows()):
        single = top_risk_factors(explanation.base_value, frame.loc[index], row, k=3)
        assert [f["feature"] for f in batch[position]] == [f["feature"] for f in single]
        assert [f["value"] for f in batch[position]] == [f["value"] for f in single]
