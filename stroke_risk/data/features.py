"""Stateless engineered features and the training reference profile.

Everything here is a pure function of one row (engineered features) or of the training
split alone (reference profile). Stateful transforms such as imputation, encoding and
scaling live in the model pipeline (see modeling.py) so they are fitted inside CV folds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from stroke_risk.data.schema import FEATURES, BinaryField, CategoricalField, NumericField


@dataclass(frozen=True)
class FeatureConfig:
    """Parameters of the engineered features (params.yaml `featurize`)."""

    age_band_edges: tuple[float, ...] = (18.0, 40.0, 60.0, 80.0)
    bmi_category_edges: tuple[float, ...] = (18.5, 25.0, 30.0)
    high_glucose_cut: float = 150.0


def band_labels(edges: tuple[float, ...]) -> list[str]:
    """Labels for half-open bands [a, b) cut at edges, e.g. '<18', '18-40', '80+'."""
    inner = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
    return [f"<{edges[0]:g}", *inner, f"{edges[-1]:g}+"]


MISSING_BAND = "unknown"


@dataclass(frozen=True)
class EngineeredFeature:
    """One engineered column: its name, the raw field it derives from and how.

    numeric and binary columns are ``compute(source values, config)`` (numpy ufuncs, so
    the same function serves a pandas Series and a numpy array); categorical columns are
    bands of the source cut at ``band_edges(config)``, missing values in MISSING_BAND.
    The pandas path (add_engineered_features), the service's compiled path
    (app/compiled.py) and the explainer (stroke_risk/models/explain.py) all read this table.
    """

    name: str
    source: str
    kind: str  # "numeric", "binary" or "categorical"
    compute: Callable[[Any, FeatureConfig], Any] | None = None
    band_edges: Callable[[FeatureConfig], tuple[float, ...]] | None = None

    def numeric(self, values: Any, config: FeatureConfig) -> Any:
        """Return the numeric/binary column of source values (binary as bools)."""
        assert self.compute is not None, f"{self.name} is a band"
        return self.compute(values, config)

    def band_codes(self, values: np.ndarray, config: FeatureConfig) -> np.ndarray:
        """Return each value's index into band_labels_of(config); missing -> the last."""
        assert self.band_edges is not None, f"{self.name} is not a band"
        edges = np.asarray(self.band_edges(config), dtype=float)
        codes = np.searchsorted(edges, values, side="right")
        return np.where(np.isnan(values), len(edges) + 1, codes)

    def band_labels_of(self, config: FeatureConfig) -> list[str]:
        """Return the labels band_codes indexes into: the bands, then MISSING_BAND."""
        assert self.band_edges is not None, f"{self.name} is not a band"
        return [*band_labels(tuple(self.band_edges(config))), MISSING_BAND]


ENGINEERED: tuple[EngineeredFeature, ...] = (
    EngineeredFeature(
        "log_avg_glucose_level", "avg_glucose_level", "numeric", lambda v, c: np.log(v)
    ),
    EngineeredFeature("age_squared", "age", "numeric", lambda v, c: (v / 10.0) ** 2),
    EngineeredFeature(
        "high_glucose", "avg_glucose_level", "binary", lambda v, c: v >= c.high_glucose_cut
    ),
    EngineeredFeature("age_band", "age", "categorical", band_edges=lambda c: c.age_band_edges),
    EngineeredFeature(
        "bmi_category", "bmi", "categorical", band_edges=lambda c: c.bmi_category_edges
    ),
)
ENGINEERED_BY_NAME: dict[str, EngineeredFeature] = {f.name: f for f in ENGINEERED}
ENGINEERED_NUMERIC = tuple(f.name for f in ENGINEERED if f.kind == "numeric")
ENGINEERED_BINARY = tuple(f.name for f in ENGINEERED if f.kind == "binary")
ENGINEERED_CATEGORICAL = tuple(f.name for f in ENGINEERED if f.kind == "categorical")
ENGINEERED_FEATURES = tuple(f.name for f in ENGINEERED)


def cut_bands(values: pd.Series, edges: tuple[float, ...]) -> pd.Series:
    """Assign each value its band label; missing values get 'unknown'."""
    labels = band_labels(edges)
    positions = np.searchsorted(
        np.asarray(edges, dtype=float), values.to_numpy(float), side="right"
    )
    banded = pd.Series(
        np.asarray(labels, dtype=object)[np.minimum(positions, len(labels) - 1)], index=values.index
    )
    return banded.where(values.notna(), MISSING_BAND)


def add_engineered_features(frame: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Return a copy of frame with the engineered columns appended (row-wise, stateless)."""
    out = frame.copy()
    for feature in ENGINEERED:
        source = out[feature.source].astype(float)
        if feature.kind == "numeric":
            out[feature.name] = feature.numeric(source, config)
        elif feature.kind == "binary":
            out[feature.name] = feature.numeric(source, config).astype(int)
        else:
            assert feature.band_edges is not None
            out[feature.name] = cut_bands(source, tuple(feature.band_edges(config)))
    return out


class FeatureEngineer(TransformerMixin, BaseEstimator):
    """sklearn wrapper of add_engineered_features, the first step of the served pipeline.

    It has no fitted state; it exists so that the artifact takes the ten raw fields and
    serving cannot skew from the featurize stage.
    """

    def __init__(self, config: FeatureConfig | None = None):
        self.config = config

    def fit(self, X: pd.DataFrame, y: Any = None) -> FeatureEngineer:
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return add_engineered_features(X, self.config or FeatureConfig())


# --- reference profile -------------------------------------------------------------

REFERENCE_BIN_COUNT = 10
REFERENCE_SAMPLE_SIZE = 1000
# Rows of the ten fields kept for the multivariate drift classifier
# (stroke_risk.monitoring.live.classifier_drift_auc). Training data kept in the model
# artifact: enough for a 3-fold classifier to tell a 0.7 AUC shift from noise, few enough
# to keep the profile small (~110 kB) and the scrape-time fit well under a second.
JOINT_SAMPLE_SIZE = 500


@dataclass
class FeatureProfile:
    name: str
    kind: str
    missing_rate: float
    # numeric: interior bin edges (quantiles) and the share of rows in each of the
    # len(edges)+1 bins; categorical/binary: category -> share.
    bin_edges: list[float] = field(default_factory=list)
    bin_shares: list[float] = field(default_factory=list)
    category_shares: dict[str, float] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    sample: list[float] = field(default_factory=list)


def numeric_profile(name: str, values: pd.Series, seed: int) -> FeatureProfile:
    """Quantile bins, shares, summary and a seeded sample (for KS tests) of one column."""
    present = values.dropna().astype(float)
    quantiles = np.quantile(present, np.linspace(0, 1, REFERENCE_BIN_COUNT + 1)[1:-1])
    edges = sorted(set(float(round(q, 6)) for q in quantiles))
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    rng = np.random.default_rng(seed)
    sample_size = min(REFERENCE_SAMPLE_SIZE, len(present))
    sample = np.sort(rng.choice(present.to_numpy(), size=sample_size, replace=False))
    return FeatureProfile(
        name=name,
        kind="numeric",
        missing_rate=round(float(values.isna().mean()), 6),
        bin_edges=edges,
        bin_shares=[round(float(c) / len(present), 6) for c in counts],
        summary={
            "mean": round(float(present.mean()), 6),
            "std": round(float(present.std()), 6),
            "min": float(present.min()),
            "max": float(present.max()),
            "median": float(present.median()),
        },
        sample=[float(round(v, 6)) for v in sample],
    )


def categorical_profile(
    name: str, kind: str, values: pd.Series, domain: list[str]
) -> FeatureProfile:
    """Share of each category of the schema's domain (zero for unseen ones)."""
    present = values.dropna().astype(str)
    shares = present.value_counts(normalize=True)
    return FeatureProfile(
        name=name,
        kind=kind,
        missing_rate=round(float(values.isna().mean()), 6),
        category_shares={c: round(float(shares.get(c, 0.0)), 6) for c in domain},
    )


def joint_sample(train: pd.DataFrame, *, size: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of whole training rows (the ten fields only, in file order).

    Values as the API receives them: numbers rounded to 6 decimals, missing as None,
    binary fields as 0/1, categories as strings. Deterministic for a given train and seed.
    """
    rng = np.random.default_rng([seed, 1])  # a stream of its own, apart from the KS samples
    chosen = np.sort(rng.choice(len(train), size=min(size, len(train)), replace=False))
    rows: list[dict[str, Any]] = []
    for position in chosen:
        row = train.iloc[int(position)]
        record: dict[str, Any] = {}
        for spec in FEATURES:
            value = row[spec.name]
            if pd.isna(value):
                record[spec.name] = None
            elif isinstance(spec, NumericField):
                record[spec.name] = float(round(float(value), 6))
            elif isinstance(spec, BinaryField):
                record[spec.name] = int(value)
            else:
                record[spec.name] = str(value)
        rows.append(record)
    return rows


# The numeric pairs whose rank correlation the monitor compares with the training split's.
CORRELATION_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (first.name, second.name)
    for index, first in enumerate(FEATURES)
    if isinstance(first, NumericField)
    for second in FEATURES[index + 1 :]
    if isinstance(second, NumericField)
)


def reference_correlations(train: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """Spearman's rho of each numeric pair over all training rows where both are present,
    keyed "first:second", with that row count (pairs with no spread left out).

    From the whole split, not a sample: the live test (stroke_risk.monitoring.drift
    .correlation_change_pvalue) counts the reference's own sampling error, 1 / (rows - 3),
    so a 500-row sample would cap how small a broken relationship's p-value can get.
    """
    correlations: dict[str, dict[str, float | int]] = {}
    for first, second in CORRELATION_PAIRS:
        both = train[[first, second]].astype(float).dropna()
        if len(both) < 4 or both[first].nunique() < 2 or both[second].nunique() < 2:
            continue
        rho = float(both[first].corr(both[second], method="spearman"))
        correlations[f"{first}:{second}"] = {"spearman": round(rho, 6), "rows": len(both)}
    return correlations


def build_reference_profile(
    train: pd.DataFrame, *, target: str, seed: int, joint_sample_size: int = JOINT_SAMPLE_SIZE
) -> dict[str, Any]:
    """Per-feature distribution summaries of the training split, for live drift checks.

    ``joint_sample`` holds ``joint_sample_size`` whole training rows (seeded): the
    reference side of the multivariate drift classifier. It is patient-level training
    data inside a model artifact; pass 0 to leave it out (the classifier is then off).
    ``correlations``: each numeric pair's rank correlation over all training rows.
    """
    profiles: list[FeatureProfile] = []
    for spec in FEATURES:
        column = train[spec.name]
        if isinstance(spec, NumericField):
            profiles.append(numeric_profile(spec.name, column, seed))
        elif isinstance(spec, BinaryField):
            domain = [str(v) for v in spec.values]
            profiles.append(
                categorical_profile(spec.name, "binary", column.astype("Int64").astype(str), domain)
            )
        else:
            assert isinstance(spec, CategoricalField)
            profiles.append(
                categorical_profile(spec.name, "categorical", column, list(spec.categories))
            )
    profile: dict[str, Any] = {
        "n_rows": int(len(train)),
        "prevalence": round(float(train[target].mean()), 6),
        "features": {p.name: p.__dict__ for p in profiles},
    }
    profile["correlations"] = reference_correlations(train)
    if joint_sample_size > 0:
        profile["joint_sample"] = joint_sample(train, size=joint_sample_size, seed=seed)
    return profile
