"""Boosted models on the fast path: XGBoost, one-column-per-tree gradient boosting, EBM.

Real fitted models, every row of both shipped CSVs. The compiled probability is the
pipeline's predict_proba; the risk factors add up to the served log-odds; they equal the
reference attribution (XGBoost's approx_contribs; sklearn's own per-tree predictions for
HistGradientBoosting; the EBM's eval_terms); missing values take the model's own branch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost

from app import compiled
from app.compiled import TOLERANCE, CompiledModel, CompiledSteps, artifact_of_pipeline
from app.explanations import build_explainer, explain_columns
from app.factory import create_app
from app.model import build_scorer, load_model
from app.validation import validate_records
from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.models import tree_tables
from stroke_risk.models.explain import PipelineExplainer
from stroke_risk.models.families import FAMILIES as FAMILY_RECORDS
from stroke_risk.models.tree_tables import boosted_trees, hgb_step_functions
from tests.app.conftest import (
    FAMILIES,
    frame_records,
    served_paths,
    training_profile,
    write_artifacts,
)

# The boosted families: XGBoost trees or sums of step functions (fitted once per session by
# tests/app/conftest.py's fitted_pipelines).
BOOSTED_FAMILIES = tuple(
    name for name, family in FAMILY_RECORDS.items() if family.export.kind in {"xgboost", "steps"}
)
STEP_FUNCTION_FAMILIES = tuple(
    name for name, family in FAMILY_RECORDS.items() if family.export.kind == "steps"
)
# XGBoost adds float32 leaves; the Saabas credits are float64: what rounding may leave.
FLOAT32_NOISE = 1e-4


def matrix_of(pipeline: Any, frame: pd.DataFrame) -> np.ndarray:
    return pipeline[:-1].transform(frame[list(FEATURE_NAMES)])


def per_field(values: np.ndarray, sources: list[str]) -> np.ndarray:
    """Sum design-matrix columns into the ten fields (independently of explain.py)."""
    frame = pd.DataFrame(values, columns=sources)
    return frame.T.groupby(level=0).sum().T.reindex(columns=list(FEATURE_NAMES), fill_value=0.0)


@pytest.mark.parametrize("family", BOOSTED_FAMILIES)
@pytest.mark.parametrize("csv_name", ["brain", "healthcare"])
def test_risk_factors_leave_only_rounding_before_any_residual_is_spread(
    family: str, csv_name: str, fitted_pipelines: dict, shipped_frames: dict
) -> None:
    """The compiled probability equals the pipeline's and the risk factors add up for every
    family (test_compiled_equality.py, test_explanations.py); for the boosted ones the raw
    residual, before it is spread, is no more than float32 rounding (exact for step
    functions), on every row, missing bmi included."""
    pipeline = fitted_pipelines[family]
    frame = shipped_frames[csv_name]
    scorer, explainer = served_paths(pipeline)
    assert explainer is not None, "served without risk factors"
    columns = validate_records(frame_records(frame)).columns
    expected = pipeline.predict_proba(frame[list(FEATURE_NAMES)])[:, 1]
    probability, explanation = explain_columns(explainer, scorer, columns)
    assert np.max(np.abs(probability - expected)) <= TOLERANCE
    assert explanation.raw_residual is not None
    raw_bound = FLOAT32_NOISE if FAMILY_RECORDS[family].export.kind == "xgboost" else 1e-9
    assert np.max(np.abs(explanation.raw_residual)) <= raw_bound
    if csv_name == "healthcare":
        assert frame["bmi"].isna().sum() == 201  # missing bmi rows were among those checked


@pytest.mark.parametrize("family", STEP_FUNCTION_FAMILIES)
def test_additive_models_are_served_by_step_functions(family: str, fitted_pipelines: dict) -> None:
    scorer, _ = served_paths(fitted_pipelines[family])
    assert scorer.kind == "compiled:step_functions"
    assert isinstance(scorer, CompiledModel) and isinstance(scorer.scorer, CompiledSteps)


def test_ebm_contributions_are_its_term_scores(
    fitted_pipelines: dict, shipped_frames: dict
) -> None:
    pipeline = fitted_pipelines["ebm"]
    model = pipeline.named_steps["model"]
    explainer = PipelineExplainer(pipeline)
    frame = pd.concat(shipped_frames.values(), ignore_index=True)
    matrix = matrix_of(pipeline, frame)
    # Values exactly on the bin cuts (interpret puts a cut in the upper bin) and missing.
    rng = np.random.default_rng(3)
    edges = np.repeat(matrix[:1], 200, axis=0)
    for row in range(len(edges)):
        column = rng.integers(matrix.shape[1])
        cuts = model.bins_[column][0]
        if len(cuts):
            edges[row, column] = cuts[rng.integers(len(cuts))]
        if row % 40 == 0:
            edges[row, column] = np.nan
    matrix = np.vstack([matrix, edges])
    terms = model.eval_terms(matrix)
    columns = [term[0] for term in model.term_features_]
    by_column = np.zeros_like(matrix)
    by_column[:, columns] = terms
    explanation = explainer.explain_matrix(matrix)
    assert explanation.base_value == float(model.intercept_[0])
    expected = per_field(by_column, explainer.sources).to_numpy()
    assert np.max(np.abs(explanation.contributions - expected)) <= 1e-12
    assert np.max(np.abs(explanation.logit - model.decision_function(matrix))) <= 1e-12


def reference_hgb_contributions(model: Any, matrix: np.ndarray) -> tuple[float, np.ndarray]:
    """The per-tree explanation: sklearn's own predictor per tree, minus the tree's
    count-weighted leaf mean, added to the column the tree splits on."""
    known_bitsets, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
    base = float(np.ravel(model._baseline_prediction)[0])
    by_column = np.zeros_like(matrix)
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        centre = float(
            np.sum(nodes["value"][leaf] * nodes["count"][leaf]) / nodes["count"][leaf].sum()
        )
        base += centre
        if leaf.all():
            continue
        (column,) = set(nodes["feature_idx"][~leaf].tolist())
        by_column[:, column] += predictor.predict(matrix, known_bitsets, f_idx_map, 1) - centre
    return base, by_column


def test_hgb_contributions_equal_the_per_tree_explanation(
    fitted_pipelines: dict, shipped_frames: dict
) -> None:
    pipeline = fitted_pipelines["hgb_monotonic"]
    explainer = PipelineExplainer(pipeline)
    frame = pd.concat(shipped_frames.values(), ignore_index=True)
    matrix = matrix_of(pipeline, frame)
    base, by_column = reference_hgb_contributions(pipeline.named_steps["model"], matrix)
    explanation = explainer.explain_matrix(matrix)
    assert explanation.base_value == pytest.approx(base, abs=1e-12)
    expected = per_field(by_column, explainer.sources).to_numpy()
    assert np.max(np.abs(explanation.contributions - expected)) <= 1e-12
    decision = pipeline.named_steps["model"].decision_function(matrix)
    assert np.max(np.abs(explanation.logit - decision)) <= 1e-12


def test_xgboost_contributions_equal_approx_contribs(
    fitted_pipelines: dict, shipped_frames: dict
) -> None:
    pipeline = fitted_pipelines["xgboost"]
    explainer = PipelineExplainer(pipeline)
    frame = pd.concat(shipped_frames.values(), ignore_index=True)
    matrix = matrix_of(pipeline, frame)
    booster = pipeline.named_steps["model"].get_booster()
    approx = booster.predict(xgboost.DMatrix(matrix), pred_contribs=True, approx_contribs=True)
    explanation = explainer.explain_matrix(matrix)
    assert explanation.base_value == pytest.approx(float(approx[0, -1]), abs=1e-5)
    expected = per_field(approx[:, :-1].astype(np.float64), explainer.sources).to_numpy()
    assert np.max(np.abs(explanation.contributions - expected)) <= FLOAT32_NOISE
    # Saabas, not TreeSHAP: on these trees the two attributions really differ.
    shap = booster.predict(xgboost.DMatrix(matrix), pred_contribs=True)
    assert np.max(np.abs(approx - shap)) > 0.01


def test_xgboost_walk_is_xgboosts_own(fitted_pipelines: dict, shipped_frames: dict) -> None:
    """Leaves equal pred_leaf and the float32 margin equals XGBoost's bit for bit."""
    pipeline = fitted_pipelines["xgboost"]
    model = pipeline.named_steps["model"]
    trees = boosted_trees(model)
    frame = pd.concat(shipped_frames.values(), ignore_index=True)
    matrix = matrix_of(pipeline, frame)
    booster = model.get_booster()
    own = booster.predict(xgboost.DMatrix(matrix), pred_leaf=True).astype(np.intp)
    for start in range(0, len(matrix), 100):  # below BOOSTER_VECTOR_LIMIT: the numpy walk
        leaves = trees.leaves(matrix[start : start + 100])
        np.testing.assert_array_equal(leaves - trees.roots, own[start : start + 100])
    margin = trees.margin(trees.leaves(matrix))
    np.testing.assert_array_equal(margin, booster.inplace_predict(matrix, predict_type="margin"))


def noisy_design_matrix(brain_frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A numeric matrix with missing values in two columns, for models fitted on NaN."""
    rng = np.random.default_rng(7)
    X = brain_frame[["age", "avg_glucose_level", "bmi", "hypertension"]].to_numpy(float)
    X[rng.random(len(X)) < 0.15, 2] = np.nan
    X[rng.random(len(X)) < 0.05, 0] = np.nan
    return X, brain_frame["stroke"].to_numpy()


def test_step_functions_follow_the_missing_branch(brain_frame: pd.DataFrame) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = noisy_design_matrix(brain_frame)
    model = HistGradientBoostingClassifier(
        max_iter=50, max_leaf_nodes=8, interaction_cst="no_interactions", random_state=0
    ).fit(X, y)
    steps = hgb_step_functions(model)
    rows = np.vstack([X, X[:50] + 0.5, np.full((1, X.shape[1]), np.nan)])
    expected = model.decision_function(rows)
    raw = steps.raw(steps.column_scores(rows))
    assert np.isnan(rows).any(axis=1).sum() > 100
    assert np.max(np.abs(raw - expected)) <= 1e-12


def test_xgboost_walk_follows_the_default_branch(brain_frame: pd.DataFrame) -> None:
    X, y = noisy_design_matrix(brain_frame)
    model = xgboost.XGBClassifier(n_estimators=40, max_depth=4, n_jobs=1).fit(X, y)
    trees = boosted_trees(model)
    rows = np.vstack([X, np.full((1, X.shape[1]), np.nan)])
    booster = model.get_booster()
    leaves = np.vstack([trees.leaves(rows[i : i + 100]) for i in range(0, len(rows), 100)])
    own = booster.predict(xgboost.DMatrix(rows), pred_leaf=True).astype(np.intp)
    np.testing.assert_array_equal(leaves - trees.roots, own)
    np.testing.assert_array_equal(
        trees.margin(leaves), booster.inplace_predict(rows, predict_type="margin")
    )
    approx = booster.predict(xgboost.DMatrix(rows), pred_contribs=True, approx_contribs=True)
    assert np.max(np.abs(trees.credit(leaves) - approx[:, :-1])) <= FLOAT32_NOISE


def test_vectorised_and_per_column_paths_agree(
    fitted_pipelines: dict, shipped_frames: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small batches use the all-at-once lookups, large ones binary search / pred_leaf."""
    frame = shipped_frames["healthcare"]
    for family in BOOSTED_FAMILIES:
        pipeline = fitted_pipelines[family]
        matrix = matrix_of(pipeline, frame)
        explainer = PipelineExplainer(pipeline)
        results = []
        for limit in (10**12, 0):
            monkeypatch.setattr(tree_tables, "STEP_VECTOR_LIMIT", limit)
            monkeypatch.setattr(tree_tables, "BOOSTER_VECTOR_LIMIT", limit)
            model = compiled.compile_pipeline(pipeline)
            probability = model.scorer(matrix)
            results.append((probability, explainer.explain_matrix(matrix, probability)))
        (p_vector, e_vector), (p_search, e_search) = results
        np.testing.assert_array_equal(p_vector, p_search)
        np.testing.assert_array_equal(e_vector.contributions, e_search.contributions)


def test_hgb_is_served_with_risk_factors(
    fitted_pipelines: dict, brain_frame: pd.DataFrame, tmp_path: Any, shipped_frames: dict
) -> None:
    settings = write_artifacts(
        tmp_path,
        fitted_pipelines["hgb_monotonic"],
        family="hgb_monotonic",
        reference_profile=training_profile(brain_frame),
    )
    settings = settings.replace(risk_factor_count=len(FEATURE_NAMES))
    model = load_model(settings)
    client = create_app(settings, model=model, extensions=()).test_client()
    version = client.get("/version").json
    assert version["inference"] == "compiled:step_functions" and version["explanations"]
    frame = shipped_frames["healthcare"]
    missing = frame[frame["bmi"].isna()].head(20)
    records = frame_records(missing)
    answer = client.post("/predict", json={"instances": records}).json
    expected = fitted_pipelines["hgb_monotonic"].predict_proba(missing[list(FEATURE_NAMES)])[:, 1]
    for prediction, wanted in zip(answer["predictions"], expected, strict=True):
        probability = prediction["stroke_probability"]
        assert abs(probability - wanted) <= TOLERANCE
        total = prediction["base_value"] + sum(
            f["contribution"] for f in prediction["risk_factors"]
        )
        assert abs(total - np.log(probability / (1 - probability))) <= 1e-9
        bmi = [f for f in prediction["risk_factors"] if f["feature"] == "bmi"]
        assert bmi[0]["value"] is None


def test_xgboost_tables_use_the_trees_predict_proba_uses(brain_frame: pd.DataFrame) -> None:
    """With early stopping, predict_proba uses the trees up to the best iteration only."""
    X, y = noisy_design_matrix(brain_frame)
    model = xgboost.XGBClassifier(
        n_estimators=200, max_depth=3, learning_rate=0.3, early_stopping_rounds=5, n_jobs=1
    ).fit(X[:3000], y[:3000], eval_set=[(X[3000:], y[3000:])], verbose=False)
    assert model.best_iteration < 199, "early stopping should have cut the trees"
    trees = boosted_trees(model)
    assert len(trees.roots) == model.best_iteration + 1
    leaves = np.vstack([trees.leaves(X[i : i + 100]) for i in range(0, len(X), 100)])
    margin = model.predict(X, output_margin=True)
    np.testing.assert_array_equal(trees.margin(leaves), margin)
    explainer_margin = trees.base_value + trees.credit(leaves).sum(axis=1)
    assert np.max(np.abs(explainer_margin - margin)) <= FLOAT32_NOISE


# An explainer whose base is off by `offset` (e.g. the wrong tree range), per export kind
# (families of one kind share an explainer): the attribute the explainer derives its base
# from, and an error the start-up check must catch. XGBoost's float32 residual and the
# forest's rescaling onto the logit would make the final sum exact whatever the base: the
# check bounds the raw residual instead.
CORRUPTIONS = {
    "logistic": ("base_value", 0.001),
    "forest": ("base_probability", 0.001),
    "xgboost": ("base_value", 0.05),
    "steps": ("base_value", 0.001),
}


def test_every_family_has_a_corruption_case() -> None:
    assert {family.export.kind for family in FAMILY_RECORDS.values()} <= set(CORRUPTIONS)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_explainer_whose_base_is_off_is_not_served(
    family: str, fitted_pipelines: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = fitted_pipelines[family]
    model = artifact_of_pipeline(pipeline)
    scorer = build_scorer(model)
    assert build_explainer(model, scorer) is not None
    attribute, offset = CORRUPTIONS[FAMILY_RECORDS[family].export.kind]
    family_explainer = type(PipelineExplainer(pipeline).family)
    original = family_explainer.__init__

    def off_by_a_bit(self: Any, model: Any, aggregate: np.ndarray) -> None:
        original(self, model, aggregate)
        setattr(self, attribute, getattr(self, attribute) + offset)

    monkeypatch.setattr(family_explainer, "__init__", off_by_a_bit)
    assert build_explainer(model, scorer) is None
