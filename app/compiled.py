"""The numeric fast path, built from the data-only serving artifact (no pickle, no sklearn).

The reference is ``pipeline.predict_proba(frame)[:, 1]`` of the fitted sklearn pipeline,
which the service never loads. The train stage writes what that pipeline computes as data
(stroke_risk/models/serving_artifact.py: the FeatureEngineer's config, the imputer statistics, the
scaler mean/scale, the one-hot categories, the estimator's tables); this module repeats the
same float64 operations on numpy arrays, in the same order, so the design matrix is the
one the pipeline builds (up to the last bit, where numpy's vectorised log or BLAS may
round differently by array layout: observed differences are ~1e-16). The estimator then
scores that matrix:

- LogisticRegression: the same matrix product and expit sklearn uses;
- XGBClassifier: XGBoost's own inplace_predict on the booster loaded from its UBJSON model,
  exactly what predict_proba calls;
- RandomForestClassifier: flat node arrays (stroke_risk.models.tree_tables.ForestTables) that
  repeat the trees' float32 split tests and the forest's averaging;
- HistGradientBoostingClassifier whose trees each split on one column (hgb_monotonic) and
  ExplainableBoostingClassifier without interactions (ebm): one step function per column
  (CompiledSteps), the same float64 scores summed per column instead of per tree/term.

The artifact carries the pipeline's probabilities on a probe batch; ``check_probe`` proves
agreement at load time; the tests prove it on every row of both shipped CSVs against the
pipeline itself (``compile_pipeline`` exports a pipeline through the artifact's bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.columns import FeatureColumns, schema_categories
from stroke_risk.data.features import ENGINEERED_BY_NAME, EngineeredFeature, FeatureConfig
from stroke_risk.data.schema import BINARY_FEATURES, CATEGORICAL_FEATURES, NUMERIC_FEATURES
from stroke_risk.models.serving_artifact import (
    ImputeStep,
    NumericPart,
    OneHotPart,
    ServingModel,
    UnsupportedPipeline,
    export_pipeline,
    probe_batch,
    read_serving_model,
    serving_model_bytes,
)
from stroke_risk.models.tree_tables import (
    BoostedTrees,
    ForestTables,
    LogisticTables,
    StepFunctions,
)

# Agreement required between the compiled path and the reference pipeline.
TOLERANCE = 1e-9

__all__ = ["UnsupportedPipeline"]


class ProbabilityModel(Protocol):
    """What the service scores with: the compiled path (tests also use ReferenceModel)."""

    @property
    def kind(self) -> str:
        """What scores: "compiled:<estimator>" or "reference_pipeline"."""
        ...

    def predict_proba(self, columns: FeatureColumns) -> np.ndarray:
        """Return P(stroke) per row as float64."""
        ...


class Source:
    """Raw and engineered columns of one batch; engineered ones from features.ENGINEERED."""

    def __init__(self, columns: FeatureColumns, engineer: FeatureConfig | None):
        self.columns = columns
        self.engineer = engineer

    def _engineered(self, name: str) -> tuple[EngineeredFeature, FeatureConfig]:
        feature = ENGINEERED_BY_NAME.get(name)
        if feature is None or self.engineer is None:
            raise KeyError(name)
        return feature, self.engineer

    def numeric(self, name: str) -> np.ndarray:
        """Return a numeric or binary column as the float64 values the pipeline sees."""
        if name in self.columns.numeric:
            return self.columns.numeric[name]
        if name in self.columns.binary:
            return self.columns.binary[name].astype(np.float64)
        feature, config = self._engineered(name)
        values = feature.numeric(self.columns.numeric[feature.source], config)
        return np.asarray(values, dtype=np.float64)

    def codes(self, name: str) -> np.ndarray:
        """Return a categorical column as codes into source_labels(name)."""
        if name in self.columns.categorical:
            return self.columns.categorical[name]
        feature, config = self._engineered(name)
        return feature.band_codes(self.columns.numeric[feature.source], config)


def source_labels(name: str, engineer: FeatureConfig | None) -> list[str]:
    """Return the label list that Source.codes(name) indexes into."""
    if name in CATEGORICAL_FEATURES:
        return list(schema_categories(name))
    feature = ENGINEERED_BY_NAME.get(name)
    if engineer is None or feature is None or feature.kind != "categorical":
        raise UnsupportedPipeline(f"categorical column {name!r} is not produced here")
    return feature.band_labels_of(engineer)


def known_numeric(name: str, engineer: FeatureConfig | None) -> bool:
    """Return whether Source.numeric can produce the column."""
    raw = name in NUMERIC_FEATURES or name in BINARY_FEATURES
    feature = ENGINEERED_BY_NAME.get(name)
    return raw or (engineer is not None and feature is not None and feature.kind != "categorical")


# --- preprocessing ---------------------------------------------------------------------


@dataclass(frozen=True)
class NumericBlock:
    """Numeric/binary columns through imputer and scaler steps, written to X[:, out]."""

    names: tuple[str, ...]
    steps: tuple[Callable[[np.ndarray], None], ...]
    out: slice

    def write(self, source: Source, X: np.ndarray) -> None:
        """Fill X[:, out] for the batch in source."""
        block = np.empty((source.columns.n_rows, len(self.names)))
        for position, name in enumerate(self.names):
            block[:, position] = source.numeric(name)
        for step in self.steps:
            step(block)
        X[:, self.out] = block


@dataclass(frozen=True)
class OneHotBlock:
    """One-hot columns; remap[j][code] is the output column of that label, -1 if none."""

    names: tuple[str, ...]
    remaps: tuple[np.ndarray, ...]
    strict: bool
    out: slice

    def write(self, source: Source, X: np.ndarray) -> None:
        """Set the 1.0 entries of X[:, out] (X starts as zeros)."""
        rows = np.arange(source.columns.n_rows)
        for name, remap in zip(self.names, self.remaps, strict=True):
            target = remap[source.codes(name)]
            known = target >= 0
            if self.strict and not known.all():
                raise ValueError(f"value of {name!r} unknown to the fitted encoder")
            X[rows[known], self.out.start + target[known]] = 1.0


def imputer_step(step: ImputeStep) -> Callable[[np.ndarray], None]:
    """Return an in-place NaN replacement with the imputer's fitted statistics."""
    statistics = step.statistics

    def impute(block: np.ndarray) -> None:
        mask = np.isnan(block)
        if mask.any():
            block[mask] = np.broadcast_to(statistics, block.shape)[mask]

    return impute


def scaler_step(mean: np.ndarray | None, scale: np.ndarray | None) -> Callable[[np.ndarray], None]:
    """Return the in-place transform StandardScaler applies: X -= mean_; X /= scale_."""

    def standardise(block: np.ndarray) -> None:
        if mean is not None:
            block -= mean
        if scale is not None:
            block /= scale

    return standardise


def numeric_block(part: NumericPart, engineer: FeatureConfig | None) -> NumericBlock:
    """Return the block that fills a numeric part's output columns."""
    unknown = [column for column in part.names if not known_numeric(column, engineer)]
    if unknown:
        raise UnsupportedPipeline(f"numeric columns {unknown} are not produced here")
    if len(part.names) != part.out[1] - part.out[0]:
        raise UnsupportedPipeline("numeric part whose width differs from its column count")
    steps = tuple(
        imputer_step(step) if isinstance(step, ImputeStep) else scaler_step(step.mean, step.scale)
        for step in part.steps
    )
    return NumericBlock(part.names, steps, slice(*part.out))


def one_hot_block(part: OneHotPart, engineer: FeatureConfig | None) -> OneHotBlock:
    """Return the one-hot block of a categorical part."""
    remaps: list[np.ndarray] = []
    offset = 0
    for name, categories in zip(part.names, part.categories, strict=True):
        position = {category: index for index, category in enumerate(categories)}
        labels = source_labels(name, engineer)
        remap = [offset + position[label] if label in position else -1 for label in labels]
        remaps.append(np.asarray(remap, dtype=np.intp))
        offset += len(categories)
    if offset != part.out[1] - part.out[0]:
        raise UnsupportedPipeline("one-hot width does not match the column transformer")
    return OneHotBlock(part.names, tuple(remaps), part.strict, slice(*part.out))


# --- estimators ------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledForest:
    """A random forest as flat node arrays (stroke_risk.models.tree_tables.ForestTables)."""

    forest: ForestTables

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Return P(class 1) per row of the design matrix."""
        return self.forest.probability(self.forest.leaves(X))

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """Return the global node id of the leaf each row reaches in each tree (what
        explanations use)."""
        return self.forest.leaves(X)

    def probability_of_leaves(self, leaves: np.ndarray) -> np.ndarray:
        """Return P(class 1) per row from leaves(X)."""
        return self.forest.probability(leaves)


@dataclass(frozen=True)
class CompiledSteps:
    """A one-column-per-tree HistGradientBoostingClassifier or an interaction-free EBM as
    step functions (stroke_risk.models.tree_tables): P = expit(baseline + one lookup per column).

    The models add the same float64 leaf/term values tree by tree or term by term; the
    lookups add them per column, so the raw scores differ only in summation order (~1e-15).
    """

    steps: StepFunctions
    column: int

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Return P(class) per row of the design matrix."""
        return self.probability_of_scores(self.steps.column_scores(X))

    def probability_of_scores(self, scores: np.ndarray) -> np.ndarray:
        """Return P(class) per row from StepFunctions.column_scores (what explanations use)."""
        from scipy.special import expit

        probability = expit(self.steps.raw(scores))
        return probability if self.column == 1 else 1.0 - probability


def estimator_scorer(tables: Any) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """Return (name, function of the design matrix giving P(class 1) as float64)."""
    if isinstance(tables, LogisticTables):
        return "logistic_regression", tables.probability
    if isinstance(tables, BoostedTrees):
        return "xgboost_inplace", tables.probability
    if isinstance(tables, ForestTables):
        return "forest_arrays", CompiledForest(tables)
    if isinstance(tables, StepFunctions):
        return "step_functions", CompiledSteps(tables, 1)
    raise UnsupportedPipeline(f"estimator tables {type(tables).__name__}")


# --- the compiled model ----------------------------------------------------------------


@dataclass(frozen=True)
class CompiledModel:
    """Design matrix builder + estimator scorer; predict_proba(columns) -> P(stroke)."""

    engineer: FeatureConfig | None
    blocks: tuple[NumericBlock | OneHotBlock, ...]
    width: int
    scorer: Callable[[np.ndarray], np.ndarray]
    kind: str

    def design_matrix(self, columns: FeatureColumns) -> np.ndarray:
        """Return the float64 matrix the fitted ColumnTransformer would output."""
        source = Source(columns, self.engineer)
        X = np.zeros((columns.n_rows, self.width))
        for block in self.blocks:
            block.write(source, X)
        return X

    def predict_proba(self, columns: FeatureColumns) -> np.ndarray:
        """Return P(stroke) per row as float64."""
        if columns.n_rows == 0:
            return np.empty(0)
        return self.scorer(self.design_matrix(columns))

    def predict_proba_with_matrix(self, columns: FeatureColumns) -> tuple[np.ndarray, np.ndarray]:
        """Return (P(stroke) per row, the design matrix it was scored from).

        The matrix is what ``pipeline[:-1].transform`` returns, for explaining the rows.
        """
        matrix = self.design_matrix(columns)
        probability = self.scorer(matrix) if columns.n_rows else np.empty(0)
        return probability, matrix


def compile_serving(model: ServingModel) -> CompiledModel:
    """Return the fast path of a serving model (read from the artifact, data only).

    Raises UnsupportedPipeline when the artifact names a column this code cannot produce.
    """
    engineer = model.feature_config
    blocks = tuple(
        one_hot_block(part, engineer)
        if isinstance(part, OneHotPart)
        else numeric_block(part, engineer)
        for part in model.parts
    )
    if max((block.out.stop for block in blocks), default=0) > model.width:
        raise UnsupportedPipeline("a part writes beyond the design matrix")
    kind, scorer = estimator_scorer(model.tables)
    return CompiledModel(engineer, blocks, model.width, scorer, f"compiled:{kind}")


def artifact_of_pipeline(pipeline: Any) -> ServingModel:
    """Return the serving model of a fitted pipeline as the service reads it: exported and
    read back through the artifact's bytes (for tests and benchmarks; the service never
    holds a pipeline)."""
    return read_serving_model(serving_model_bytes(export_pipeline(pipeline)))


def compile_pipeline(pipeline: Any) -> CompiledModel:
    """Return the fast path the service would build from this pipeline's serving artifact."""
    return compile_serving(artifact_of_pipeline(pipeline))


@dataclass(frozen=True)
class ReferenceModel:
    """A fitted pipeline itself, scored on a DataFrame: the reference the tests compare the
    served path with (the service never loads a pipeline)."""

    pipeline: Any
    kind: str = "reference_pipeline"

    def predict_proba(self, columns: FeatureColumns) -> np.ndarray:
        """Return pipeline.predict_proba(frame)[:, class 1] as float64."""
        if columns.n_rows == 0:
            return np.empty(0)
        column = list(np.asarray(self.pipeline.classes_)).index(1)
        return np.asarray(
            self.pipeline.predict_proba(columns.to_frame())[:, column], dtype=np.float64
        )


# --- agreement check -------------------------------------------------------------------


def probe_columns(engineer: FeatureConfig | None, n_random: int = 400) -> FeatureColumns:
    """The probe batch (stroke_risk.models.serving_artifact.probe_batch) as FeatureColumns."""
    probe = probe_batch(engineer, n_random)
    return FeatureColumns(probe.numeric, probe.binary, probe.categorical, probe.n_rows)


def max_disagreement(model: ProbabilityModel, reference: ProbabilityModel, columns: Any) -> float:
    """Return the largest |model - reference| probability over the batch."""
    return float(np.max(np.abs(model.predict_proba(columns) - reference.predict_proba(columns))))


def check_probe(compiled: CompiledModel, model: ServingModel) -> float:
    """Return the max disagreement with the pipeline's probabilities recorded in the
    artifact; raise UnsupportedPipeline above TOLERANCE."""
    probe = model.probe
    columns = FeatureColumns(probe.numeric, probe.binary, probe.categorical, probe.n_rows)
    difference = float(np.max(np.abs(compiled.predict_proba(columns) - model.probe_probability)))
    if not difference <= TOLERANCE:
        raise UnsupportedPipeline(
            f"the served path differs from the pipeline's recorded probabilities by "
            f"{difference:.3g}"
        )
    return difference


def check_against_reference(compiled: CompiledModel, pipeline: Any) -> float:
    """Return the max disagreement with a pipeline on the probe batch (tests); raise
    UnsupportedPipeline above TOLERANCE."""
    difference = max_disagreement(
        compiled, ReferenceModel(pipeline), probe_columns(compiled.engineer)
    )
    if not difference <= TOLERANCE:
        raise UnsupportedPipeline(f"compiled path differs from the pipeline by {difference:.3g}")
    return difference
