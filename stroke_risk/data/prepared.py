"""Turning params.yaml sections into typed objects, and reading the stage CSVs back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from stroke_risk.data.features import ENGINEERED_CATEGORICAL, FeatureConfig
from stroke_risk.data.schema import CATEGORICAL_FEATURES


def feature_config_from_params(featurize: Mapping[str, Any]) -> FeatureConfig:
    """FeatureConfig from the `featurize` params section (extra keys are ignored)."""
    return FeatureConfig(
        age_band_edges=tuple(float(e) for e in featurize["age_band_edges"]),
        bmi_category_edges=tuple(float(e) for e in featurize["bmi_category_edges"]),
        high_glucose_cut=float(featurize["high_glucose_cut"]),
    )


def read_prepared(path: str) -> pd.DataFrame:
    """Read a prepared or featurized CSV with categories as strings and bmi NaN intact."""
    categorical = {c: str for c in (*CATEGORICAL_FEATURES, *ENGINEERED_CATEGORICAL)}
    return pd.read_csv(path, dtype=categorical, keep_default_na=False, na_values=[""])
