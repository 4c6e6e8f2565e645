"""models/model_metadata.json: what the train stage records next to the fitted model.

One builder for the contract docs/CONTRACTS.md describes ("Model artifacts"); the service,
the evaluate and report stages, MLflow logging and releases read it. Deterministic: no
timestamps, run ids or git commits, so an unchanged model rewrites identical bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stroke_risk.data.schema import FEATURES
from stroke_risk.evaluation.metrics import threshold_metrics
from stroke_risk.evaluation.thresholds import select_threshold
from stroke_risk.models.environment import library_versions
from stroke_risk.models.pipelines import split_params
from stroke_risk.models.tuned_model import TunedModel
from stroke_risk.params import ThresholdParams


@dataclass(frozen=True)
class ThresholdChoice:
    """The decision threshold a policy chose on out-of-fold scores, and its metrics there."""

    value: float
    policy: ThresholdParams
    cv_metrics: dict[str, float]


def choose_threshold(
    y_oof: np.ndarray, oof_probability: np.ndarray, policy: ThresholdParams
) -> ThresholdChoice:
    """Apply the `threshold` params' policy to out-of-fold predictions (never the test split)."""
    value = select_threshold(
        y_oof,
        oof_probability,
        policy=policy.policy,
        target_recall=policy.target_recall,
        harm_benefit_ratio=policy.harm_benefit_ratio,
    )
    return ThresholdChoice(value, policy, threshold_metrics(y_oof, oof_probability, value))


def model_metadata(
    model: TunedModel,
    *,
    tuning: Mapping[str, Any],
    threshold: ThresholdChoice,
    y_train: np.ndarray,
    training_data_sha256: str,
) -> dict[str, Any]:
    """The content of models/model_metadata.json for a model fitted on the training split."""
    feature_set, _ = split_params(model.best_params)
    return {
        "model_family": model.family,
        "params": model.best_params,
        "feature_set": feature_set,
        "decision_threshold": threshold.value,
        "threshold_policy": threshold.policy.model_dump(),
        "threshold_cv_metrics": {k: round(v, 6) for k, v in threshold.cv_metrics.items()},
        "cv_metrics": tuning["cv"],
        "feature_config": asdict(model.feature_config),
        "feature_schema": [asdict(spec) for spec in FEATURES],
        "training_data_sha256": training_data_sha256,
        "training_rows": int(len(y_train)),
        "training_prevalence": round(float(y_train.mean()), 6),
        "library_versions": library_versions(),
    }
