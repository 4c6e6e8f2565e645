"""Per-prediction explanations on the log-odds scale, per raw input field.

``explain(pipeline, frame)`` returns ``(base_value, contributions)``: one contribution per
schema field (the ten raw inputs) for every row, such that

    base_value + contributions.sum(axis=1) == model_logit(pipeline, frame)   (within 1e-6)

where the model's logit is ``log(p / (1 - p))`` of ``pipeline.predict_proba(frame)[:, 1]``.
Transformed columns are summed back to the raw field they derive from (``age_squared`` and
``age_band`` are ``age``; one-hot columns are their field), so a user sees the ten fields
they sent, never an encoding.

What a contribution is relative to depends on the model family:

- ``LogisticRegression``: coefficient x transformed value, base value = intercept. Numeric
  columns are standardised, so a numeric field at its training mean contributes 0 (the
  reference is the training-mean patient); binary fields contribute 0 when absent; a
  categorical field contributes the coefficient of the patient's category (relative to the
  intercept's implicit "no category"). Exact.
- ``XGBClassifier``: decision-path (Saabas) contributions on the margin, exactly XGBoost's
  ``pred_contribs(approx_contribs=True)``: walking a row down a tree, each split credits
  its column with the change of the cover-weighted mean leaf value from the node to the
  child taken. Credits are precomputed per leaf (stroke_risk.models.tree_tables), so a row costs
  one vectorised walk and a gather (~0.07 ms for 400 trees of depth 4, against ~0.9 ms for
  TreeSHAP with its DMatrix). Per tree the credits add up to the leaf value exactly, so the
  sum over fields is exact like TreeSHAP's; the split between fields follows the order of
  the splits on the path instead of averaging over all orderings as TreeSHAP does (so it
  is not "consistent" in Lundberg's sense). The base value is the base margin plus every
  tree's root mean. XGBoost adds its leaves in float32, so the rounding residual against
  the float64 logit of its probability (~1e-6) is kept as ``raw_residual`` (the service
  bounds it) and then spread over the fields in proportion to their magnitude to make the
  float64 sum exact.
- ``RandomForestClassifier``: a forest averages probabilities, so no additive decomposition
  of its logit exists. We compute exact path (Saabas) contributions on the probability
  scale, precomputed per leaf, and rescale them by one common factor per row so that they
  sum to ``logit(p) - logit(base)``. The sum is exact; the split between fields is an
  approximation (it keeps each field's sign and share of the probability-scale
  attribution). The base value is the logit of the forest's mean root (bootstrap training)
  rate. Forest probabilities of exactly 0 or 1 are clipped to ``[1e-6, 1 - 1e-6]`` first.
- ``ExplainableBoostingClassifier`` (no interactions): its own per-term scores (what
  ``eval_terms`` returns), compiled with the same step functions as gradient boosting
  below; base value = intercept. Exact.
- ``HistGradientBoostingClassifier`` with ``interaction_cst="no_interactions"`` (the
  hgb_monotonic family): every tree splits on one column, so the log-odds are a sum of one
  step function per column, compiled once (stroke_risk.models.tree_tables.StepFunctions). A
  column's contribution is its step value minus its trees' training-count-weighted leaf
  means; the base value is the baseline plus those means. Exact, no residual spread
  (~0.02 ms a row for 400 trees).

Explanations are computed from one transform of the input, so ``explain_prediction`` also
returns the model's probability at no extra cost. Costs for one row on the project machine:
the sklearn transform of a DataFrame is ~5-8 ms, the explanation of the transformed row
~0.01-0.02 ms (logreg, gradient boosting) to ~0.1-0.2 ms (forest, XGBoost with a few
hundred trees). A server that builds the design matrix itself should keep one
``PipelineExplainer`` per loaded model and call ``explain_matrix``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from stroke_risk.data.features import ENGINEERED
from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.log_odds import logit
from stroke_risk.models.families import model_tables
from stroke_risk.models.tree_tables import (
    BoostedTrees,
    ForestTables,
    LogisticTables,
    ModelTables,
    StepFunctions,
)

# Raw field each engineered column is computed from (the table in stroke_risk.data.features).
ENGINEERED_SOURCES: dict[str, str] = {feature.name: feature.source for feature in ENGINEERED}
# A forest can predict exactly 0 or 1, whose logit is infinite.
FOREST_PROBABILITY_FLOOR = 1e-6
# Below this probability-scale total the forest rescaling uses the logit's derivative.
_TINY_PROBABILITY_CHANGE = 1e-12


def source_field(column: str) -> str:
    """The raw schema field a model input column (raw or engineered) derives from."""
    field_name = ENGINEERED_SOURCES.get(column, column)
    if field_name not in FEATURE_NAMES:
        raise ValueError(f"column {column!r} does not derive from a known input field")
    return field_name


def _output_widths(transformer: Any, columns: Sequence[str]) -> list[int]:
    """Number of output columns each input column of one ColumnTransformer part produces."""
    final = transformer.steps[-1][1] if isinstance(transformer, Pipeline) else transformer
    if isinstance(final, OneHotEncoder):
        if getattr(final, "drop_idx_", None) is not None:
            raise ValueError("one-hot encoders with drop= are not supported by explain")
        return [len(categories) for categories in final.categories_]
    return [1] * len(columns)


def transformed_sources(preprocess: ColumnTransformer) -> list[str]:
    """Raw field of every output column of a fitted preprocessor, in output order."""
    sources: list[str] = [""] * sum(s.stop - s.start for s in preprocess.output_indices_.values())
    for name, transformer, columns in preprocess.transformers_:
        output = preprocess.output_indices_[name]
        if output.stop == output.start:
            continue  # dropped remainder or an empty part
        widths = _output_widths(transformer, columns)
        if sum(widths) != output.stop - output.start:
            # e.g. an imputer that dropped an all-missing column: the mapping would be wrong
            raise ValueError(f"cannot map the outputs of preprocessing part {name!r} to fields")
        position = output.start
        for column, width in zip(columns, widths, strict=True):
            sources[position : position + width] = [source_field(column)] * width
            position += width
    return sources


def aggregation_matrix(sources: Sequence[str]) -> np.ndarray:
    """0/1 matrix (n transformed columns x ten fields): column contributions -> fields."""
    matrix = np.zeros((len(sources), len(FEATURE_NAMES)))
    for row, field_name in enumerate(sources):
        matrix[row, FEATURE_NAMES.index(field_name)] = 1.0
    return matrix


@dataclass(frozen=True)
class Explanation:
    """Explained predictions of a batch of rows.

    ``contributions[i, j]`` is field ``feature_names[j]``'s log-odds contribution to row i;
    ``base_value + contributions[i].sum() == logit[i]`` and ``probability`` equals the
    pipeline's ``predict_proba(frame)[:, 1]`` (to float rounding; forests: the logit is of
    the probability clipped to [1e-6, 1 - 1e-6]).
    """

    base_value: float
    contributions: np.ndarray
    logit: np.ndarray
    probability: np.ndarray
    feature_names: tuple[str, ...] = FEATURE_NAMES
    # What the contributions missed before any adjustment, so a check of the final sum
    # (which spreading or rescaling makes exact) can still see a wrong base value or leaf:
    # XGBoost, gradient boosting, EBM: logit - base - sum(contributions) (XGBoost's float32
    # rounding, ~1e-6, is then spread over the fields); random forest, on the probability
    # scale: p - base rate - sum of the path credits (then rescaled onto the logit).
    raw_residual: np.ndarray | None = None

    def contributions_frame(self, index: Any = None) -> pd.DataFrame:
        return pd.DataFrame(self.contributions, columns=list(self.feature_names), index=index)


class _LinearExplainer:
    def __init__(self, tables: LogisticTables, aggregate: np.ndarray):
        # Coefficients already summed per field: contributions are one matrix product.
        self.tables = tables
        self.field_weights = tables.coef[0][:, None] * aggregate
        self.base_value = float(tables.intercept[0])

    def explain(
        self, matrix: np.ndarray, probability: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if probability is None:
            probability = self.tables.probability(matrix)
        return probability, matrix @ self.field_weights


class _XGBoostExplainer:
    """Saabas path contributions of an XGBoost booster (``pred_contribs(approx_contribs=
    True)``), precomputed per leaf (stroke_risk.models.tree_tables): a row costs one vectorised
    walk of the trees and a gather, ~0.05 ms for 400 trees of depth 4."""

    def __init__(self, trees: BoostedTrees, aggregate: np.ndarray):
        self.raw_residual: np.ndarray | None = None
        self.trees = trees
        self.field_credit = self.trees.node_credit @ aggregate
        self.base_value = self.trees.base_value

    def explain(
        self, matrix: np.ndarray, probability: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if probability is None:
            probability = self.trees.probability(matrix)
        contributions = _summed_rows(self.field_credit, self.trees.leaves(matrix))
        # The credits telescope to each tree's leaf value in float64, XGBoost adds its
        # leaves in float32: base + contributions misses the float64 logit of its own
        # probability by rounding noise (|residual| ~1e-6). The raw residual is kept for the
        # serving check; spread over the fields in proportion to their magnitude, it makes
        # the sum exact.
        residual = logit(probability, floor=0.0) - self.base_value - contributions.sum(axis=1)
        self.raw_residual = residual
        return probability, contributions + residual[:, None] * _shares(contributions)


# Rows gathered at once when summing per-leaf credits: bounds the (rows, trees, fields)
# intermediate of a large batch to ~16 MB.
_GATHER_ELEMENTS = 1 << 21


def _summed_rows(table: np.ndarray, leaves: np.ndarray) -> np.ndarray:
    """Return table[leaves].sum(axis=1), gathered a block of rows at a time."""
    step = max(1, _GATHER_ELEMENTS // max(1, leaves.shape[1] * table.shape[1]))
    if len(leaves) <= step:
        return table[leaves].sum(axis=1)
    return np.concatenate(
        [table[leaves[start : start + step]].sum(axis=1) for start in range(0, len(leaves), step)]
    )


def _shares(contributions: np.ndarray) -> np.ndarray:
    """Each field's share of a row's total |contribution| (equal shares if all are 0)."""
    magnitude = np.abs(contributions)
    total = magnitude.sum(axis=1, keepdims=True)
    return np.divide(
        magnitude, total, out=np.full_like(magnitude, 1 / magnitude.shape[1]), where=total > 0
    )


class _ForestExplainer:
    """Saabas path contributions of a random forest, precomputed for every tree node.

    For a node reached from its parent, the change of the class-1 rate is credited to the
    field the parent split on. The cumulative credit at a leaf is the explanation of every
    row landing in that leaf, so explaining a row costs one walk of the trees and a gather.
    """

    def __init__(self, forest: ForestTables, aggregate: np.ndarray):
        self.raw_residual: np.ndarray | None = None
        self.forest = forest
        self.credit = self._cumulative_credit(forest, aggregate.argmax(axis=1))
        self.base_probability = float(np.mean(forest.rate[forest.roots]))
        self.base_value = float(logit(np.asarray(self.base_probability), floor=0.0))

    @staticmethod
    def _cumulative_credit(forest: ForestTables, field_of_column: np.ndarray) -> np.ndarray:
        credit = np.zeros((len(forest.rate), len(FEATURE_NAMES)))
        level = forest.roots
        is_leaf = forest.is_leaf
        # Level by level from the roots: each child inherits its parent's credit plus its own.
        while len(level):
            internal = level[~is_leaf[level]]
            fields = field_of_column[forest.feature[internal]]
            next_level = []
            for children in (forest.left[internal], forest.right[internal]):
                credit[children] = credit[internal]
                credit[children, fields] += forest.rate[children] - forest.rate[internal]
                next_level.append(children)
            level = np.concatenate(next_level)
        return credit

    def explain(
        self, matrix: np.ndarray, probability: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        # The probability is recomputed from the same leaves whatever is passed: it costs
        # nothing extra here.
        return self.explain_leaves(self.forest.leaves(matrix))

    def explain_leaves(
        self, leaves: np.ndarray, probability: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Explain rows from the leaf each reaches in each tree (ForestTables.leaves' global
        ids); ``probability``, if given, is the forest's predict_proba of those rows."""
        if probability is None:
            probability = self.forest.probability(leaves)
        probability_credit = _summed_rows(self.credit, leaves) / leaves.shape[1]
        change = probability_credit.sum(axis=1)
        # Per tree the credits telescope to leaf rate - root rate, so before the rescaling
        # below (which makes any base value add up) they must sum to p - base rate.
        self.raw_residual = probability - self.base_probability - change
        logit_change = logit(probability, floor=FOREST_PROBABILITY_FLOOR) - self.base_value
        base = self.base_probability
        # One factor per row maps the probability-scale credit onto the logit change; when
        # the prediction equals the base rate use the logit's slope there instead of 0/0.
        tiny = np.abs(change) < _TINY_PROBABILITY_CHANGE
        scale = np.where(
            tiny, 1.0 / (base * (1.0 - base)), logit_change / np.where(tiny, 1.0, change)
        )
        return probability, probability_credit * scale[:, None]


class _AdditiveBoostingExplainer:
    """A sum of one step function per column, compiled once (stroke_risk.models.tree_tables.
    StepFunctions): HistGradientBoosting with interaction_cst='no_interactions' (every tree
    splits on one column) or an Explainable Boosting Machine without interactions. A
    column's contribution is its step value minus its centre, moved into the base value:
    for gradient boosting the trees' training-count-weighted leaf means (so it averages 0
    over the training rows); for an EBM 0 (its term scores, centred by interpret). Exact:
    no residual is spread."""

    def __init__(self, steps: StepFunctions, aggregate: np.ndarray):
        self.raw_residual: np.ndarray | None = None
        self.aggregate = aggregate
        self.steps = steps
        self.base_value = self.steps.constant + float(self.steps.centres.sum())

    def explain(
        self, matrix: np.ndarray, probability: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.explain_scores(self.steps.column_scores(matrix), probability)

    def explain_scores(
        self, scores: np.ndarray, probability: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Explain rows from their column_scores; probability defaults to the steps'."""
        if probability is None:
            probability = expit(self.steps.raw(scores))
        contributions = (scores - self.steps.centres) @ self.aggregate
        self.raw_residual = (
            logit(probability, floor=0.0) - self.base_value - contributions.sum(axis=1)
        )
        return probability, contributions


_Family = _LinearExplainer | _XGBoostExplainer | _ForestExplainer | _AdditiveBoostingExplainer


def _family_explainer(tables: ModelTables, aggregate: np.ndarray) -> _Family:
    if isinstance(tables, LogisticTables):
        return _LinearExplainer(tables, aggregate)
    if isinstance(tables, BoostedTrees):
        return _XGBoostExplainer(tables, aggregate)
    if isinstance(tables, ForestTables):
        return _ForestExplainer(tables, aggregate)
    return _AdditiveBoostingExplainer(tables, aggregate)


class MatrixExplainer:
    """Explainer of design matrices, built from data only: the raw field of every
    design-matrix column (``sources``) and the model's tables. The service builds it from
    the serving artifact; PipelineExplainer builds it from a fitted pipeline.

    Building it precomputes everything that depends only on the model, so keep one per
    loaded model.
    """

    def __init__(self, sources: Sequence[str], tables: ModelTables):
        self.sources = list(sources)
        self.tables = tables
        self.family = _family_explainer(tables, aggregation_matrix(self.sources))

    @property
    def base_value(self) -> float:
        return self.family.base_value

    @property
    def clips_probability(self) -> bool:
        """Whether the logit explained is of the probability clipped to [1e-6, 1 - 1e-6]
        (a random forest, which can answer exactly 0 or 1)."""
        return isinstance(self.family, _ForestExplainer)

    def explain_matrix(
        self, matrix: np.ndarray, probability: np.ndarray | None = None
    ) -> Explanation:
        """Explain rows already transformed by the pipeline's steps before the model.

        For a caller that builds the design matrix itself (the API's fast path); the
        matrix must be exactly what ``pipeline[:-1].transform`` returns. A caller that has
        already scored the matrix passes its ``probability`` (equal to the model's
        ``predict_proba``), so logistic regression and XGBoost do not score it again.
        """
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.sources):
            raise ValueError(
                f"expected a design matrix with {len(self.sources)} columns, got {matrix.shape}"
            )
        probability, contributions = self.family.explain(matrix, probability)
        raw = getattr(self.family, "raw_residual", None)
        return self._explanation(
            probability, contributions, raw if raw is not None and len(raw) == len(matrix) else None
        )

    def _explanation(
        self, probability: np.ndarray, contributions: np.ndarray, raw: np.ndarray | None
    ) -> Explanation:
        return Explanation(
            base_value=self.base_value,
            contributions=contributions,
            logit=self.base_value + contributions.sum(axis=1),
            probability=probability,
            raw_residual=raw,
        )

    @property
    def explains_leaves(self) -> bool:
        """Whether explain_leaves works: the model is a random forest."""
        return isinstance(self.family, _ForestExplainer)

    def explain_leaves(
        self, leaves: np.ndarray, probability: np.ndarray | None = None
    ) -> Explanation:
        """Explain a random forest's rows from the leaves they reach (n_rows x n_trees of
        ForestTables.leaves' global node ids), for a caller that has walked the trees
        already; a caller that has also averaged the leaves' rates passes that
        ``probability``."""
        if not isinstance(self.family, _ForestExplainer):
            raise TypeError("explain_leaves needs a random forest")
        probability, contributions = self.family.explain_leaves(leaves, probability)
        return self._explanation(probability, contributions, self.family.raw_residual)

    @property
    def explains_column_scores(self) -> bool:
        """Whether explain_column_scores works: an EBM or one-column-per-tree boosting."""
        return isinstance(self.family, _AdditiveBoostingExplainer)

    def explain_column_scores(
        self, scores: np.ndarray, probability: np.ndarray | None = None
    ) -> Explanation:
        """Explain rows from their step-function values (``StepFunctions.column_scores``
        of the model's design matrix), for a caller that has looked them up already; a
        caller that has also scored them passes that ``probability``."""
        if not isinstance(self.family, _AdditiveBoostingExplainer):
            raise TypeError("explain_column_scores needs a sum of one function per column")
        probability, contributions = self.family.explain_scores(scores, probability)
        return self._explanation(probability, contributions, self.family.raw_residual)


class PipelineExplainer(MatrixExplainer):
    """Explainer of one fitted pipeline (serving: engineer -> preprocess -> model, or the
    training pipeline preprocess -> model on featurized frames): a MatrixExplainer of the
    pipeline's model tables that also transforms DataFrames.

    Building it precomputes everything that depends only on the model, so keep one per
    loaded model (``explain`` caches it on the pipeline object).
    """

    def __init__(self, pipeline: Pipeline):
        if "preprocess" not in pipeline.named_steps or pipeline.steps[-1][0] != "model":
            raise ValueError("expected a pipeline with a 'preprocess' step and a final 'model'")
        self.pipeline = pipeline
        self.transform = pipeline[:-1]
        self.model = pipeline.named_steps["model"]
        super().__init__(
            transformed_sources(pipeline.named_steps["preprocess"]), model_tables(self.model)
        )

    def explain(self, frame: pd.DataFrame) -> Explanation:
        """Probability, logit and per-field contributions of every row of frame."""
        return self.explain_matrix(self.transform.transform(frame))


_EXPLAINERS: weakref.WeakKeyDictionary[Pipeline, tuple[tuple[int, ...], PipelineExplainer]] = (
    weakref.WeakKeyDictionary()
)


def _fitted_identity(pipeline: Pipeline) -> tuple[int, ...]:
    """Identity of the fitted state: refitting replaces the estimators' fitted attributes
    (coef_, estimators_, _Booster ...), so a refitted pipeline gets a new explainer."""
    return tuple(
        id(value)
        for _, step in pipeline.steps
        for name, value in sorted(vars(step).items())
        if name.endswith("_") and not name.startswith("__")
    )


def explainer_for(pipeline: Pipeline) -> PipelineExplainer:
    """The cached explainer of a pipeline (rebuilt when the pipeline has been refitted)."""
    identity = _fitted_identity(pipeline)
    cached = _EXPLAINERS.get(pipeline)
    if cached is None or cached[0] != identity:
        cached = (identity, PipelineExplainer(pipeline))
        _EXPLAINERS[pipeline] = cached
    return cached[1]


def explain_prediction(pipeline: Pipeline, frame: pd.DataFrame) -> Explanation:
    """Predict and explain in one pass (one transform); see the module docstring."""
    return explainer_for(pipeline).explain(frame)


def explain(pipeline: Pipeline, frame: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    """(base_value, contributions): log-odds contributions per raw field, one row per row.

    ``base_value + contributions.sum(axis=1)`` equals the model's logit of each row.
    """
    explanation = explain_prediction(pipeline, frame)
    return explanation.base_value, explanation.contributions_frame(index=frame.index)


def model_logit(pipeline: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """The log-odds that explanations add up to: ``logit(predict_proba)`` (forests clipped)."""
    probability = np.asarray(pipeline.predict_proba(frame)[:, 1], dtype=np.float64)
    if type(pipeline.steps[-1][1]).__name__ == "RandomForestClassifier":
        return logit(probability, floor=FOREST_PROBABILITY_FLOOR)
    return logit(probability, floor=0.0)


def _json_value(value: Any) -> Any:
    """Plain JSON value of an input field: numpy scalars unwrapped, NaN/None as None."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def top_risk_factors(
    base_value: float,
    contributions: Mapping[str, float] | pd.Series,
    values: Mapping[str, Any] | pd.Series,
    k: int = 3,
) -> list[dict[str, Any]]:
    """The k fields with the largest absolute contribution of one row, largest first.

    Each item is ``{"feature", "value", "contribution"}`` (contribution in log-odds; positive
    raises risk relative to the base value). Ties keep schema order, so the result is
    deterministic. ``base_value`` is accepted so callers can pass ``explain``'s output
    through unchanged; the ranking does not depend on it.
    """
    del base_value  # the ranking is by contribution only
    items = [(name, float(contributions[name])) for name in FEATURE_NAMES if name in contributions]
    ranked = sorted(items, key=lambda item: -abs(item[1]))  # sorted() is stable
    return [
        {"feature": name, "value": _json_value(values.get(name)), "contribution": contribution}
        for name, contribution in ranked[: max(k, 0)]
    ]


def top_risk_factors_batch(
    explanation: Explanation,
    records: pd.DataFrame | Sequence[Mapping[str, Any]],
    k: int = 3,
) -> list[list[dict[str, Any]]]:
    """top_risk_factors of every row of an explained batch (records: a frame or dicts)."""
    if isinstance(records, pd.DataFrame):
        records = records.to_dict(orient="records")
    if len(records) != len(explanation.contributions):
        raise ValueError(f"{len(records)} records for {len(explanation.contributions)} rows")
    order = np.argsort(-np.abs(explanation.contributions), axis=1, kind="stable")[:, : max(k, 0)]
    names = explanation.feature_names
    return [
        [
            {
                "feature": names[j],
                "value": _json_value(record.get(names[j])),
                "contribution": float(explanation.contributions[i, j]),
            }
            for j in order[i]
        ]
        for i, record in enumerate(records)
    ]
