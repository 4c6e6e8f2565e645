"""The MLflow pyfunc flavour of a model revision: answers like the service's /predict.

`mlflow.pyfunc.load_model("models:/stroke-risk@candidate").predict(frame)` returns, per
row, the probability, the decision at the model's own threshold (not 0.5) and that
threshold, under the service's field names. Imported by MLflow when the model is loaded,
so it needs only the model's own libraries and this package.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from stroke_risk.data.schema import FEATURE_NAMES, validate_record


def predict_frame(pipeline: Any, threshold: float, frame: pd.DataFrame) -> pd.DataFrame:
    """Score raw records; raises ValueError naming every bad field of every bad row."""
    problems = []
    for row, record in enumerate(frame.to_dict(orient="records")):
        validation = validate_record({k: _plain(v) for k, v in record.items()})
        problems += [f"row {row}: {error.field}: {error.message}" for error in validation.errors]
    if problems:
        raise ValueError("; ".join(problems))
    probability = pipeline.predict_proba(frame[list(FEATURE_NAMES)])[:, 1]
    return pd.DataFrame(
        {
            "stroke_probability": probability,
            "stroke_prediction": (probability >= threshold).astype(np.int64),
            "threshold": np.full(len(probability), float(threshold)),
        }
    )


def _plain(value: Any) -> Any:
    """numpy scalars and NaN as the JSON-like values the schema validates."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


class StrokeRiskModel(PythonModel):
    """Loads models/model.joblib and its metadata from the run's artifacts."""

    def load_context(self, context: Any) -> None:
        import joblib

        self.pipeline = joblib.load(context.artifacts["model"])
        with open(context.artifacts["metadata"]) as handle:
            self.threshold = float(json.load(handle)["decision_threshold"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return predict_frame(self.pipeline, self.threshold, pd.DataFrame(model_input))
