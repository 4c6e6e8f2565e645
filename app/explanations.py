"""Per-prediction risk factors for /predict (issue #5), computed by stroke_risk.models.explain.

One ``MatrixExplainer`` is built per loaded model, at load time, from the data-only serving
artifact (the raw field of each design-matrix column and the model's tables; no pipeline,
no pickle). It explains the design matrix that app/compiled.py builds for scoring, so a
request transforms its records once for both. Contributions are per raw field, on the
log-odds scale, and exact for the model family in use (see stroke_risk/models/explain.py for
what each family's contribution means):

    base_value + sum of the ten contributions == log(p / (1 - p))   (within 1e-6)

where p is the served ``stroke_probability`` (random forests: p clipped to
[1e-6, 1 - 1e-6], since a forest can answer exactly 0 or 1). ``build_explainer`` checks
this on a probe batch before the server answers; a model that fails the check is served
without risk factors (and a warning), never with wrong ones.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.columns import FeatureColumns
from app.compiled import (
    CompiledForest,
    CompiledModel,
    CompiledSteps,
    ProbabilityModel,
    probe_columns,
)
from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.log_odds import logit
from stroke_risk.models.explain import (
    FOREST_PROBABILITY_FLOOR,
    Explanation,
    MatrixExplainer,
    PipelineExplainer,
)
from stroke_risk.models.serving_artifact import ServingModel

logger = logging.getLogger(__name__)

# Largest allowed |base_value + sum(contributions) - served log-odds| on the probe batch.
EXPLANATION_TOLERANCE = 1e-6
# Largest allowed raw residual (Explanation.raw_residual: what the contributions miss
# before XGBoost's rounding is spread or a forest's credits are rescaled): XGBoost's float32
# rounding is ~1e-6 log-odds, the others' ~1e-15; a wrong base value, tree range, leaf or
# step is far larger.
RAW_RESIDUAL_TOLERANCE = 1e-4
_FEATURE_NAME_TABLE = np.asarray(FEATURE_NAMES, dtype=object)


def served_log_odds(probability: np.ndarray, explainer: MatrixExplainer) -> np.ndarray:
    """Return the log-odds the explanations add up to for served probabilities.

    As stroke_risk.models.explain.model_logit: a random forest's probability is clipped first.
    """
    if explainer.clips_probability:
        return logit(probability, floor=FOREST_PROBABILITY_FLOOR)
    return logit(probability, floor=0.0)


def explain_columns(
    explainer: MatrixExplainer, scorer: ProbabilityModel, columns: FeatureColumns
) -> tuple[np.ndarray, Explanation]:
    """Return (served probability, explanation) of the records, from one transform.

    The compiled path's design matrix is exactly ``pipeline[:-1].transform``'s output, so
    it is both scored and explained; a reference pipeline (tests) transforms a DataFrame.
    """
    if isinstance(scorer, CompiledModel):
        if isinstance(scorer.scorer, CompiledForest) and explainer.explains_leaves:
            # One walk of the trees gives both the probability and the explanation.
            leaves = scorer.scorer.leaves(scorer.design_matrix(columns))
            probability = scorer.scorer.probability_of_leaves(leaves)
            return probability, explainer.explain_leaves(leaves, probability)
        if isinstance(scorer.scorer, CompiledSteps) and explainer.explains_column_scores:
            # One lookup per column gives both the probability and the explanation.
            scores = scorer.scorer.steps.column_scores(scorer.design_matrix(columns))
            probability = scorer.scorer.probability_of_scores(scores)
            return probability, explainer.explain_column_scores(scores, probability)
        probability, matrix = scorer.predict_proba_with_matrix(columns)
        return probability, explainer.explain_matrix(matrix, probability)
    if not isinstance(explainer, PipelineExplainer):
        raise TypeError("a reference scorer needs a PipelineExplainer")
    return scorer.predict_proba(columns), explainer.explain(columns.to_frame())


def build_explainer(model: ServingModel, scorer: ProbabilityModel) -> MatrixExplainer | None:
    """Return the serving model's explainer if it adds up to the served log-odds, else None.

    Checked on the same probe batch as the compiled path (every category, band edge and
    bound). None, with a warning, when the model family has no exact explanation or the
    check fails: the server then answers without risk factors.
    """
    try:
        explainer = MatrixExplainer(model.sources, model.tables)
        columns = probe_columns(getattr(scorer, "engineer", None))
        probability, explanation = explain_columns(explainer, scorer, columns)
    except (TypeError, ValueError) as reason:
        logger.warning("serving without risk factors: %s", reason)
        return None
    if explanation.raw_residual is not None:
        raw = float(np.max(np.abs(explanation.raw_residual)))
        if not raw <= RAW_RESIDUAL_TOLERANCE:
            logger.warning(
                "serving without risk factors: contributions miss the log-odds by %.3g "
                "before rounding is spread",
                raw,
            )
            return None
    gap = np.abs(explanation.logit - served_log_odds(probability, explainer))
    largest = float(np.max(gap))
    if not largest <= EXPLANATION_TOLERANCE:
        logger.warning(
            "serving without risk factors: explanations miss the served log-odds by %.3g",
            largest,
        )
        return None
    logger.info("risk factors add up to the served log-odds (max |gap| %.2g)", largest)
    return explainer


def risk_factor_lists(
    contributions: np.ndarray, records: Sequence[Mapping[str, Any]], count: int
) -> list[list[dict[str, Any]]]:
    """Return, per row, the count fields with the largest |contribution|, largest first.

    Items are ``{"feature", "value", "contribution"}`` with the canonical field name and
    the value the model scored (missing bmi: None). Same items and order as
    stroke_risk.models.explain.top_risk_factors_batch (ties keep schema order), built from whole
    arrays: a 10,000-record batch takes ~10 ms instead of ~50 ms.
    """
    if len(records) == 1:
        # One row: Python's stable sort of ten numbers beats numpy's per-call overhead.
        row = contributions[0].tolist()
        top = sorted(range(len(row)), key=lambda j: -abs(row[j]))[:count]
        record = records[0]
        return [
            [
                {
                    "feature": FEATURE_NAMES[j],
                    "value": record[FEATURE_NAMES[j]],
                    "contribution": row[j],
                }
                for j in top
            ]
        ]
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :count]
    names = _FEATURE_NAME_TABLE[order].tolist()
    values = np.take_along_axis(contributions, order, axis=1).tolist()
    return [
        [
            {"feature": name, "value": record[name], "contribution": contribution}
            for name, contribution in zip(row_names, row_values, strict=True)
        ]
        for record, row_names, row_values in zip(records, names, values, strict=True)
    ]
