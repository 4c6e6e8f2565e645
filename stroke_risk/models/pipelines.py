"""Model pipelines (preprocessing + estimator), search spaces and cross-validation.

The pipeline is built from the ten raw fields plus the engineered columns of
features.py; every stateful step (imputation, one-hot encoding, scaling) is inside it,
so cross-validation fits them on the training folds only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from stroke_risk.data.features import (
    ENGINEERED_BY_NAME,
    FeatureConfig,
    FeatureEngineer,
)
from stroke_risk.data.schema import CATEGORICAL_FEATURES, FEATURES_BY_NAME, CategoricalField
from stroke_risk.evaluation.metrics import probability_metrics
from stroke_risk.models.families import family_named
from stroke_risk.models.reproducible_fit import fit_reproducibly

# Engineered or raw columns along which predicted risk must never fall (a family with
# monotonic_cst, stroke_risk.models.families):
# older age, higher glucose, hypertension, heart disease. age_squared rises with age
# because ages are non-negative.
MONOTONE_INCREASING = frozenset(
    {
        "age",
        "age_squared",
        "avg_glucose_level",
        "log_avg_glucose_level",
        "high_glucose",
        "hypertension",
        "heart_disease",
    }
)
# Categorical bands of a monotone field: one-hot columns cannot be constrained, so a feature
# set containing them cannot give the monotone guarantee.
MONOTONE_BANDS = frozenset({"age_band"})


@dataclass(frozen=True)
class FeatureSet:
    numeric: tuple[str, ...]
    binary: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.binary, *self.categorical]


# Named column sets the tuner can choose between (the choice is a hyperparameter, so it
# is made by CV on the training split, not by looking at the test split).
FEATURE_SETS: dict[str, FeatureSet] = {
    "compact": FeatureSet(
        numeric=("age", "log_avg_glucose_level"),
        binary=("hypertension", "heart_disease", "high_glucose"),
        categorical=(),
    ),
    "full": FeatureSet(
        numeric=("age", "age_squared", "avg_glucose_level", "log_avg_glucose_level", "bmi"),
        binary=("hypertension", "heart_disease", "high_glucose"),
        categorical=(*CATEGORICAL_FEATURES, "age_band", "bmi_category"),
    ),
    # Every field, but age only as numbers (no age bands), so risk can be constrained to
    # rise with age (hgb_monotonic); usable by every family.
    "monotone": FeatureSet(
        numeric=("age", "age_squared", "avg_glucose_level", "log_avg_glucose_level", "bmi"),
        binary=("hypertension", "heart_disease", "high_glucose"),
        categorical=(*CATEGORICAL_FEATURES, "bmi_category"),
    ),
}


def category_domain(column: str, feature_config: FeatureConfig) -> list[str]:
    """The fixed category list of a categorical column (schema or engineered bands)."""
    if column in ENGINEERED_BY_NAME:
        return ENGINEERED_BY_NAME[column].band_labels_of(feature_config)
    spec = FEATURES_BY_NAME[column]
    assert isinstance(spec, CategoricalField)
    return list(spec.categories)


def build_preprocessor(feature_set: FeatureSet, feature_config: FeatureConfig) -> ColumnTransformer:
    """Median-impute and scale numerics, one-hot categoricals over the schema's domain."""
    transformers: list[tuple[str, Any, list[str]]] = [
        (
            "numeric",
            Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
            list(feature_set.numeric),
        ),
        ("binary", "passthrough", list(feature_set.binary)),
    ]
    if feature_set.categorical:
        # Categories come from the schema, not the data: values absent from training
        # (gender 'Other') get a column of zeros instead of an error at serving time.
        categories = [category_domain(c, feature_config) for c in feature_set.categorical]
        transformers.append(
            (
                "categorical",
                OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False),
                list(feature_set.categorical),
            )
        )
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)


def build_estimator(family: str, params: Mapping[str, Any], seed: int) -> Any:
    """The bare estimator of a model family with its hyperparameters (its record in
    stroke_risk.models.families); UnknownFamily (a one-line ParamsError) for an unknown name."""
    return family_named(family).build_estimator(params, seed)


def split_params(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Separate the feature-set choice from the estimator's own hyperparameters."""
    estimator_params = dict(params)
    feature_set = estimator_params.pop("feature_set", "full")
    return str(feature_set), estimator_params


def build_model_pipeline(
    family: str, params: Mapping[str, Any], *, feature_config: FeatureConfig, seed: int
) -> Pipeline:
    """Preprocessing + estimator for already-featurized frames (training and CV)."""
    feature_set_name, estimator_params = split_params(params)
    if feature_set_name not in FEATURE_SETS:
        raise ValueError(
            f"unknown feature_set {feature_set_name!r}; expected one of {sorted(FEATURE_SETS)}"
        )
    feature_set = FEATURE_SETS[feature_set_name]
    estimator = build_estimator(family, estimator_params, seed)
    if family_named(family).monotonic_cst:
        estimator.set_params(
            monotonic_cst=monotonic_constraints(feature_set, feature_config, feature_set_name)
        )
    return Pipeline(
        [
            ("preprocess", build_preprocessor(feature_set, feature_config)),
            ("model", estimator),
        ]
    )


def monotonic_constraints(
    feature_set: FeatureSet, feature_config: FeatureConfig, name: str = "this feature set"
) -> list[int]:
    """HistGradientBoosting's monotonic_cst for the preprocessor's output columns (numeric,
    binary, then one one-hot column per category): +1 for MONOTONE_INCREASING, else 0."""
    bands = sorted(MONOTONE_BANDS.intersection(feature_set.categorical))
    if bands:
        raise ValueError(
            f"feature_set {name!r} has {', '.join(bands)}, whose one-hot columns cannot be "
            "constrained to be monotone; use feature_set 'compact' or 'monotone' for a "
            "monotone family"
        )
    constraints = [
        int(c in MONOTONE_INCREASING) for c in (*feature_set.numeric, *feature_set.binary)
    ]
    for column in feature_set.categorical:
        constraints += [0] * len(category_domain(column, feature_config))
    return constraints


def build_serving_pipeline(fitted: Pipeline, feature_config: FeatureConfig) -> Pipeline:
    """Prepend the stateless feature step so the artifact takes the ten raw fields."""
    return Pipeline([("engineer", FeatureEngineer(feature_config)), *fitted.steps])


def suggest_params(trial: Any, search_space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Draw one parameter set from a config search space via an Optuna trial.

    Each entry is {type: float|int|categorical, low, high, log, step, choices}.
    """
    params: dict[str, Any] = {}
    for name, spec in search_space.items():
        kind = spec["type"]
        if kind == "float":
            params[name] = trial.suggest_float(
                name, spec["low"], spec["high"], log=spec.get("log", False)
            )
        elif kind == "int":
            params[name] = trial.suggest_int(
                name,
                spec["low"],
                spec["high"],
                log=spec.get("log", False),
                step=spec.get("step", 1),
            )
        elif kind == "categorical":
            params[name] = trial.suggest_categorical(name, list(spec["choices"]))
        else:
            raise ValueError(f"search space '{name}': unknown type {kind!r}")
    return params


@dataclass
class CVResult:
    fold_scores: list[dict[str, float]]
    oof_probability: np.ndarray  # mean over repeats of each training row's held-out score

    def mean(self, metric: str) -> float:
        return float(np.mean([f[metric] for f in self.fold_scores]))

    def std(self, metric: str) -> float:
        """Sample standard deviation across folds (ddof=1), as reported with "± sd"."""
        return float(np.std([f[metric] for f in self.fold_scores], ddof=1))


def fold_metrics(y_true: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """The metrics tracked per CV fold (a subset of evaluation.probability_metrics)."""
    metrics = probability_metrics(y_true, probability)
    return {name: metrics[name] for name in ("roc_auc", "average_precision", "brier")}


def cross_validate_pipeline(
    make_pipeline: Callable[[], Pipeline],
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    n_splits: int,
    n_repeats: int,
    seed: int,
    n_jobs: int = 1,
) -> CVResult:
    """Repeated stratified K-fold CV; each fold fits a fresh pipeline on its train part.

    Folds run in n_jobs processes; results do not depend on n_jobs.
    """
    splitter = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    folds = list(splitter.split(X, y))
    probabilities = Parallel(n_jobs=n_jobs)(
        delayed(_fit_and_score_fold)(make_pipeline(), X, y, fit_index, held_out_index)
        for fit_index, held_out_index in folds
    )
    oof_sum = np.zeros(len(y))
    oof_count = np.zeros(len(y))
    scores: list[dict[str, float]] = []
    for fold, ((_, held_out_index), probability) in enumerate(
        zip(folds, probabilities, strict=True)
    ):
        scores.append({"fold": fold, **fold_metrics(y[held_out_index], probability)})
        oof_sum[held_out_index] += probability
        oof_count[held_out_index] += 1
    return CVResult(scores, oof_sum / oof_count)


def _fit_and_score_fold(
    pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, fit_index: np.ndarray, held_out: np.ndarray
) -> np.ndarray:
    fitted = fit_reproducibly(pipeline, X.iloc[fit_index], y[fit_index])
    return fitted.predict_proba(X.iloc[held_out])[:, 1]
