"""The tuned model a stage refits: family, tuned params, feature config and seed, read once.

The train and instability stages both refit the tune stage's best params; this is where
they read them, so the two cannot disagree on what "the tuned model" is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sklearn.pipeline import Pipeline

from stroke_risk.data.features import FeatureConfig
from stroke_risk.data.prepared import feature_config_from_params
from stroke_risk.models.pipelines import build_model_pipeline
from stroke_risk.params import FeaturizeParams, ModelParams, TrainParams, read_section


@dataclass(frozen=True)
class TunedModel:
    """What the tune stage chose (reports/tuning.json) under the current params."""

    family: str
    best_params: Mapping[str, Any]
    feature_config: FeatureConfig
    seed: int

    def pipeline(self) -> Pipeline:
        """A fresh, unfitted pipeline (preprocessing + estimator) for featurized frames."""
        return build_model_pipeline(
            self.family, self.best_params, feature_config=self.feature_config, seed=self.seed
        )


def tuned_model(
    params: Mapping[str, Any], tuning: Mapping[str, Any], *, tuning_path: str
) -> TunedModel:
    """The tuned model of params.yaml (model.family, train.seed, featurize) and the tune
    stage's report; ValueError when the report was tuned for another family."""
    family = read_section(params, "model", ModelParams).family
    if tuning["family"] != family:
        raise ValueError(f"{tuning_path} was tuned for {tuning['family']}, not {family}")
    featurize = read_section(params, "featurize", FeaturizeParams)
    return TunedModel(
        family=family,
        best_params=tuning["best_params"],
        feature_config=feature_config_from_params(featurize.model_dump()),
        seed=read_section(params, "train", TrainParams).seed,
    )
