"""A numeric fast path compiled once from the fitted sklearn pipeline.

The reference is ``pipeline.predict_proba(frame)[:, 1]``. Scoring one row through it
costs ~10 ms, almost all ColumnTransformer/pandas overhead. This module reads the fitted
state (the FeatureEngineer's config, the imputer statistics, the scaler mean/scale, the
one-hot categories, the estimator) and repeats the same float64 operations on numpy
arrays, in the same order, so the design matrix is the one the pipeline builds (up to
the last bit, where numpy's vectorised log or BLAS may round differently by array
layout: observed differences are ~1e-16). The estimator then scores that matrix:

- LogisticRegression: the same matrix product and expit sklearn uses;
- XGBClassifier: the booster's inplace_predict, exactly what predict_proba calls;
- RandomForestClassifier / ExtraTreesClassifier: flat node arrays (CompiledForest) that
  repeat the trees' float32 split tests and the forest's averaging;
- HistGradientBoostingClassifier whose trees each split on one column (hgb_monotonic) and
  ExplainableBoostingClassifier without interactions (ebm): one step function per column
  (CompiledSteps), the same float64 scores summed per column instead of per tree/term;
- any other classifier: its own predict_proba on the matrix, with n_jobs=1.

Anything this module does not recognise raises UnsupportedPipeline, and the caller
serves the reference pipeline instead. ``check_against_reference`` proves agreement on a
probe set at load time; the tests prove it on every row of both shipped CSVs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.columns import FeatureColumns, schema_categories
from stroke_risk.features import ENGINEERED_BY_NAME, EngineeredFeature, FeatureConfig
from stroke_risk.schema import (
    BINARY_FEATURES,
    CATEGORICAL_FEATURES,
    FEATURES,
    NUMERIC_FEATURES,
    BinaryField,
    CategoricalField,
    NumericField,
)
from stroke_risk.tree_tables import StepFunctions, step_functions

# Agreement required between the compiled path and the reference pipeline.
TOLERANCE = 1e-9


class UnsupportedPipeline(Exception):
    """The fitted pipeline has a step the compiler does not know; serve the reference."""


class ProbabilityModel(Protocol):
    """What the service scores with: the compiled path or the reference pipeline."""

    kind: str

    def predict_proba(self, columns: FeatureColumns) -> np.ndarray:
        """Return P(stroke) per row as float64."""
        ...


@dataclass(frozen=True)
class EngineerSpec:
    """The fitted FeatureEngineer's config; the columns come from features.ENGINEERED."""

    config: FeatureConfig

    @property
    def age_band_edges(self) -> np.ndarray:
        return np.asarray(self.config.age_band_edges, dtype=np.float64)

    @property
    def bmi_category_edges(self) -> np.ndarray:
        return np.asarray(self.config.bmi_category_edges, dtype=np.float64)

    @property
    def high_glucose_cut(self) -> float:
        return float(self.config.high_glucose_cut)


class Source:
    """Raw and engineered columns of one batch; engineered ones from features.ENGINEERED."""

    def __init__(self, columns: FeatureColumns, engineer: EngineerSpec | None):
        self.columns = columns
        self.engineer = engineer

    def _engineered(self, name: str) -> tuple[EngineeredFeature, FeatureConfig]:
        feature = ENGINEERED_BY_NAME.get(name)
        if feature is None or self.engineer is None:
            raise KeyError(name)
        return feature, self.engineer.config

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


def source_labels(name: str, engineer: EngineerSpec | None) -> list[str]:
    """Return the label list that Source.codes(name) indexes into."""
    if name in CATEGORICAL_FEATURES:
        return list(schema_categories(name))
    feature = ENGINEERED_BY_NAME.get(name)
    if engineer is None or feature is None or feature.kind != "categorical":
        raise UnsupportedPipeline(f"categorical column {name!r} is not produced here")
    return feature.band_labels_of(engineer.config)


def known_numeric(name: str, engineer: EngineerSpec | None) -> bool:
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


def imputer_step(imputer: Any) -> Callable[[np.ndarray], None]:
    """Return an in-place NaN replacement with the imputer's fitted statistics."""
    missing = imputer.missing_values
    if not (isinstance(missing, float) and math.isnan(missing)):
        raise UnsupportedPipeline("imputer with missing_values other than NaN")
    if getattr(imputer, "add_indicator", False):
        raise UnsupportedPipeline("imputer with add_indicator")
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    if not np.isfinite(statistics).all():
        raise UnsupportedPipeline("imputer that drops all-missing columns")

    def impute(block: np.ndarray) -> None:
        mask = np.isnan(block)
        if mask.any():
            block[mask] = np.broadcast_to(statistics, block.shape)[mask]

    return impute


def scaler_step(scaler: Any) -> Callable[[np.ndarray], None]:
    """Return the in-place transform StandardScaler applies: X -= mean_; X /= scale_."""
    mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
    scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None

    def standardise(block: np.ndarray) -> None:
        if mean is not None:
            block -= mean
        if scale is not None:
            block /= scale

    return standardise


def numeric_steps(transformer: Any) -> tuple[Callable[[np.ndarray], None], ...]:
    """Return the numeric steps of a passthrough, imputer, scaler or Pipeline of them."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    if isinstance(transformer, str) and transformer == "passthrough":
        return ()
    if type(transformer) is FunctionTransformer and transformer.func is None:
        return ()  # what ColumnTransformer stores for "passthrough" once fitted
    if isinstance(transformer, Pipeline):
        return tuple(step for _, inner in transformer.steps for step in numeric_steps(inner))
    if type(transformer) is SimpleImputer:
        return (imputer_step(transformer),)
    if type(transformer) is StandardScaler:
        return (scaler_step(transformer),)
    raise UnsupportedPipeline(f"column transformer step {type(transformer).__name__}")


def one_hot_block(
    encoder: Any, names: tuple[str, ...], out: slice, engineer: EngineerSpec | None
) -> OneHotBlock:
    """Return the one-hot block of a fitted OneHotEncoder over the given columns."""
    if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False):
        raise UnsupportedPipeline("one-hot encoder with drop or infrequent categories")
    if getattr(encoder, "sparse_output", False) or np.dtype(encoder.dtype) != np.float64:
        raise UnsupportedPipeline("one-hot encoder with sparse or non-float64 output")
    remaps: list[np.ndarray] = []
    offset = 0
    for name, categories in zip(names, encoder.categories_, strict=True):
        position = {str(category): index for index, category in enumerate(categories)}
        labels = source_labels(name, engineer)
        remap = [offset + position[label] if label in position else -1 for label in labels]
        remaps.append(np.asarray(remap, dtype=np.intp))
        offset += len(categories)
    if offset != out.stop - out.start:
        raise UnsupportedPipeline("one-hot width does not match the column transformer")
    return OneHotBlock(names, tuple(remaps), encoder.handle_unknown == "error", out)


def compile_preprocessor(
    transformer: Any, engineer: EngineerSpec | None
) -> tuple[list[NumericBlock | OneHotBlock], int]:
    """Return the blocks of a fitted ColumnTransformer and its output width."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    if type(transformer) is not ColumnTransformer:
        raise UnsupportedPipeline(f"preprocessing step {type(transformer).__name__}")
    indices = transformer.output_indices_
    blocks: list[NumericBlock | OneHotBlock] = []
    width = 0
    for name, fitted, columns in transformer.transformers_:
        out = indices[name]
        width = max(width, out.stop)
        if out.stop == out.start or (isinstance(fitted, str) and fitted == "drop"):
            continue
        if not all(isinstance(column, str) for column in columns):
            raise UnsupportedPipeline("columns selected by position or mask")
        names = tuple(columns)
        if type(fitted) is OneHotEncoder:
            blocks.append(one_hot_block(fitted, names, out, engineer))
            continue
        unknown = [column for column in names if not known_numeric(column, engineer)]
        if unknown:
            raise UnsupportedPipeline(f"numeric columns {unknown} are not produced here")
        if len(names) != out.stop - out.start:
            raise UnsupportedPipeline(f"transformer {name!r} changes the column count")
        blocks.append(NumericBlock(names, numeric_steps(fitted), out))
    return blocks, width


# --- estimators ------------------------------------------------------------------------


def positive_column(estimator: Any) -> int:
    """Return the predict_proba column of class 1; raise unless the classes are {0, 1}."""
    classes = [int(c) for c in np.asarray(getattr(estimator, "classes_", []))]
    if sorted(classes) != [0, 1]:
        raise UnsupportedPipeline(f"classifier classes {classes}, expected [0, 1]")
    return classes.index(1)


# Below this many (rows x trees) a forest is walked for all trees at once in numpy; above
# it each tree's own C traversal (tree_.apply) is cheaper.
FOREST_VECTOR_LIMIT = 50_000


@dataclass(frozen=True)
class CompiledForest:
    """A fitted random forest / extra-trees classifier as flat node arrays.

    Each tree's leaf probability is sklearn's value[:, 1] / value.sum() (what
    DecisionTreeClassifier.predict_proba computes), the per-row sum runs over the trees
    in order (cumsum, like the forest's ``+=``) and is divided by the tree count.
    Splits compare float32 features with float64 thresholds, as sklearn's tree does.
    """

    trees: tuple[Any, ...]
    leaf_probability: tuple[np.ndarray, ...]
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    node_probability: np.ndarray
    depth: int
    column: int

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Return P(class) per row of the design matrix."""
        return self.probability_of_leaves(self.leaves(X))

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """Return the leaf each row reaches in each tree: (n_rows, n_trees) node ids of
        each tree's own arrays, as ``tree.apply`` numbers them (what explanations use)."""
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        n_rows, n_trees = X32.shape[0], len(self.trees)
        if n_rows * n_trees <= FOREST_VECTOR_LIMIT and not np.isnan(X32).any():
            node = np.repeat(self.roots[np.newaxis, :], n_rows, axis=0)
            rows = np.arange(n_rows)[:, np.newaxis]
            for _ in range(self.depth):
                go_left = X32[rows, self.feature[node]] <= self.threshold[node]
                node = np.where(go_left, self.left[node], self.right[node])
            return node - self.roots
        leaves = np.empty((n_rows, n_trees), dtype=np.intp)
        for position, tree in enumerate(self.trees):
            leaves[:, position] = tree.apply(X32)
        return leaves

    def probability_of_leaves(self, leaves: np.ndarray) -> np.ndarray:
        """Return P(class) per row from leaves(X): the trees' leaf rates summed in tree
        order (the forest's ``+=``), divided by the tree count."""
        per_tree = self.node_probability[leaves + self.roots]
        return np.cumsum(per_tree, axis=1)[:, -1] / len(self.trees)


def compile_forest(forest: Any, column: int) -> CompiledForest:
    """Return the flat-array form of a fitted sklearn forest classifier."""
    if forest.n_outputs_ != 1:
        raise UnsupportedPipeline("multi-output forest")
    trees, leaf_probability = [], []
    roots, features, thresholds, lefts, rights, probabilities = [], [], [], [], [], []
    offset = 0
    for estimator in forest.estimators_:
        tree = estimator.tree_
        value = tree.value[:, 0, : estimator.n_classes_]
        normalizer = value.sum(axis=1)[:, np.newaxis]
        normalizer[normalizer == 0.0] = 1.0
        probability = (value / normalizer)[:, column]
        leaf = tree.children_left < 0
        index = np.arange(tree.node_count)
        trees.append(tree)
        leaf_probability.append(probability)
        roots.append(offset)
        # Leaves point at themselves, so extra loop iterations leave them in place.
        features.append(np.where(leaf, 0, tree.feature))
        thresholds.append(np.where(leaf, 0.0, tree.threshold))
        lefts.append(offset + np.where(leaf, index, tree.children_left))
        rights.append(offset + np.where(leaf, index, tree.children_right))
        probabilities.append(probability)
        offset += tree.node_count
    return CompiledForest(
        trees=tuple(trees),
        leaf_probability=tuple(leaf_probability),
        roots=np.asarray(roots, dtype=np.intp),
        feature=np.concatenate(features).astype(np.intp),
        threshold=np.concatenate(thresholds).astype(np.float64),
        left=np.concatenate(lefts).astype(np.intp),
        right=np.concatenate(rights).astype(np.intp),
        node_probability=np.concatenate(probabilities),
        depth=max(int(tree.max_depth) for tree in trees),
        column=column,
    )


@dataclass(frozen=True)
class CompiledSteps:
    """A one-column-per-tree HistGradientBoostingClassifier or an interaction-free EBM as
    step functions (stroke_risk.tree_tables): P = expit(baseline + one lookup per column).

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


def estimator_scorer(estimator: Any) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """Return (name, function of the design matrix giving P(class 1) as float64)."""
    column = positive_column(estimator)
    kind = type(estimator).__name__
    if kind == "LogisticRegression" and type(estimator).__module__.startswith("sklearn."):
        from scipy.special import expit

        coef = np.asarray(estimator.coef_, dtype=np.float64)
        if coef.shape[0] != 1:
            raise UnsupportedPipeline("multi-row logistic regression coefficients")
        coef_t = coef.T
        intercept = np.asarray(estimator.intercept_, dtype=np.float64)

        def logistic(X: np.ndarray) -> np.ndarray:
            # decision_function: X @ coef_.T + intercept_; _predict_proba_lr: expit.
            scores = (X @ coef_t + intercept).reshape(-1)
            probability = expit(scores)
            return probability if column == 1 else 1.0 - probability

        return "logistic_regression", logistic
    if kind == "XGBClassifier" and getattr(estimator, "objective", None) == "binary:logistic":
        booster = estimator.get_booster()
        iteration_range = estimator._get_iteration_range(None)
        missing = estimator.missing

        def boosted(X: np.ndarray) -> np.ndarray:
            # XGBClassifier.predict_proba runs exactly this inplace_predict on numpy input.
            value = booster.inplace_predict(
                X,
                iteration_range=iteration_range,
                predict_type="value",
                missing=missing,
                validate_features=False,
            )
            probability = np.asarray(value, dtype=np.float64).reshape(-1)
            return probability if column == 1 else 1.0 - probability

        return "xgboost_inplace", boosted
    if kind in {"RandomForestClassifier", "ExtraTreesClassifier"} and type(
        estimator
    ).__module__.startswith("sklearn."):
        return "forest_arrays", compile_forest(estimator, column)
    if kind in {"HistGradientBoostingClassifier", "ExplainableBoostingClassifier"}:
        try:
            steps = step_functions(estimator)
        except ValueError as reason:
            raise UnsupportedPipeline(str(reason)) from None
        return "step_functions", CompiledSteps(steps, column)
    if not callable(getattr(estimator, "predict_proba", None)):
        raise UnsupportedPipeline(f"estimator {kind} has no predict_proba")
    if hasattr(estimator, "n_jobs"):
        # Per-call thread start-up dominates small batches; results do not depend on it.
        estimator = copy.copy(estimator)
        estimator.n_jobs = 1

    def generic(X: np.ndarray) -> np.ndarray:
        return np.asarray(estimator.predict_proba(X)[:, column], dtype=np.float64)

    return f"{kind}.predict_proba", generic


# --- the compiled model ----------------------------------------------------------------


@dataclass(frozen=True)
class CompiledModel:
    """Design matrix builder + estimator scorer; predict_proba(columns) -> P(stroke)."""

    engineer: EngineerSpec | None
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


def engineer_spec(step: Any) -> EngineerSpec:
    """Return the parameters of a fitted stroke_risk FeatureEngineer."""
    from stroke_risk.features import FeatureEngineer

    if type(step) is not FeatureEngineer:
        raise UnsupportedPipeline(f"feature step {type(step).__name__}")
    config = step.config or FeatureConfig()
    return EngineerSpec(config)


def compile_pipeline(pipeline: Any) -> CompiledModel:
    """Return the compiled fast path of a fitted serving pipeline.

    Expects [FeatureEngineer,] ColumnTransformer, classifier (docs/CONTRACTS.md); raises
    UnsupportedPipeline for anything else.
    """
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline):
        raise UnsupportedPipeline(f"artifact is a {type(pipeline).__name__}, not a Pipeline")
    steps = [step for _, step in pipeline.steps if not (isinstance(step, str) or step is None)]
    if len(steps) == 3:
        engineer: EngineerSpec | None = engineer_spec(steps[0])
        steps = steps[1:]
    elif len(steps) == 2:
        engineer = None
    else:
        raise UnsupportedPipeline(f"pipeline with {len(steps)} steps")
    blocks, width = compile_preprocessor(steps[0], engineer)
    expected = getattr(steps[1], "n_features_in_", width)
    if expected != width:
        raise UnsupportedPipeline(f"estimator expects {expected} features, matrix has {width}")
    kind, scorer = estimator_scorer(steps[1])
    return CompiledModel(engineer, tuple(blocks), width, scorer, f"compiled:{kind}")


@dataclass(frozen=True)
class ReferenceModel:
    """The unpickled pipeline itself, scored on a DataFrame (slow, always correct)."""

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


def probe_columns(engineer: EngineerSpec | None, n_random: int = 400) -> FeatureColumns:
    """Return a deterministic probe batch covering every category, band edge and bound.

    Rows cycle through each field's special values (bounds, band edges, missing bmi) and
    the rest are seeded random draws over the schema's full domain.
    """
    rng = np.random.default_rng(20240611)
    specials: dict[str, list[float]] = {}
    for spec in FEATURES:
        if isinstance(spec, NumericField):
            values = [spec.minimum, spec.maximum, (spec.minimum + spec.maximum) / 2]
            if engineer is not None:
                values += list(engineer.age_band_edges) + list(engineer.bmi_category_edges)
                values.append(engineer.high_glucose_cut)
            values = [v for v in values if spec.minimum <= v <= spec.maximum]
            specials[spec.name] = values + ([math.nan] if spec.nullable else [])
    n_special = max(len(values) for values in specials.values())
    n_rows = n_special + n_random
    numeric: dict[str, np.ndarray] = {}
    binary: dict[str, np.ndarray] = {}
    categorical: dict[str, np.ndarray] = {}
    for spec in FEATURES:
        if isinstance(spec, NumericField):
            drawn = rng.uniform(spec.minimum, spec.maximum, n_rows)
            special = specials[spec.name]
            drawn[:n_special] = [special[i % len(special)] for i in range(n_special)]
            if spec.nullable:
                drawn[n_special:][rng.random(n_random) < 0.1] = np.nan
            numeric[spec.name] = drawn
        elif isinstance(spec, BinaryField):
            binary[spec.name] = rng.integers(0, 2, n_rows).astype(np.int64)
        else:
            assert isinstance(spec, CategoricalField)
            count = len(spec.categories)
            codes = rng.integers(0, count, n_rows)
            codes[:count] = np.arange(count)
            categorical[spec.name] = codes.astype(np.intp)
    return FeatureColumns(numeric, binary, categorical, n_rows)


def max_disagreement(model: ProbabilityModel, reference: ProbabilityModel, columns: Any) -> float:
    """Return the largest |model - reference| probability over the batch."""
    return float(np.max(np.abs(model.predict_proba(columns) - reference.predict_proba(columns))))


def check_against_reference(compiled: CompiledModel, pipeline: Any) -> float:
    """Return the max disagreement on the probe batch; raise UnsupportedPipeline above 1e-9."""
    difference = max_disagreement(
        compiled, ReferenceModel(pipeline), probe_columns(compiled.engineer)
    )
    if not difference <= TOLERANCE:
        raise UnsupportedPipeline(f"compiled path differs from the pipeline by {difference:.3g}")
    return difference
