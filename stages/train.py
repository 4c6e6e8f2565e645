"""Stage train: fit the tuned pipeline on the whole training split; pick the threshold.

Reads params: model.family, threshold.*, train.seed, featurize (feature definitions).
Writes: models/model.joblib (raw fields -> probability; the pipeline the later stages and
MLflow load), models/serving_model.npz (the same model as data only, the one file the
service loads: stroke_risk/models/serving_artifact.py), models/model_metadata.json.
MLflow logging happens once the model is evaluated (stages/evaluate.py).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import joblib
import pandas as pd

from stroke_risk.cli import run_stage
from stroke_risk.data.load import file_md5, file_sha256
from stroke_risk.data.prepared import feature_config_from_params, read_prepared
from stroke_risk.data.schema import FEATURES, TARGET
from stroke_risk.evaluation.metrics import threshold_metrics
from stroke_risk.evaluation.thresholds import select_threshold
from stroke_risk.io import atomic_path, load_params, write_json
from stroke_risk.models.environment import library_versions
from stroke_risk.models.pipelines import build_model_pipeline, build_serving_pipeline, split_params
from stroke_risk.models.reproducible_fit import fit_reproducibly
from stroke_risk.models.serving_artifact import export_pipeline, serving_model_bytes
from stroke_risk.params import (
    FeaturizeParams,
    ModelParams,
    ThresholdParams,
    TrainParams,
    read_section,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train", default="data/features/train.csv")
    parser.add_argument("--tuning", default="reports/tuning.json")
    parser.add_argument("--oof", default="data/oof/oof_predictions.csv")
    parser.add_argument("--model", default="models/model.joblib")
    parser.add_argument("--serving-model", default="models/serving_model.npz")
    parser.add_argument("--metadata", default="models/model_metadata.json")
    args = parser.parse_args()
    params = load_params(args.params)
    family = read_section(params, "model", ModelParams).family
    policy = read_section(params, "threshold", ThresholdParams)
    seed = read_section(params, "train", TrainParams).seed
    featurize = read_section(params, "featurize", FeaturizeParams)
    feature_config = feature_config_from_params(featurize.model_dump())
    with open(args.tuning) as handle:
        tuning = json.load(handle)
    if tuning["family"] != family:
        raise ValueError(f"{args.tuning} was tuned for {tuning['family']}, not {family}")

    train = read_prepared(args.train)
    y = train.pop(TARGET).to_numpy()
    fitted = fit_reproducibly(
        build_model_pipeline(
            family, tuning["best_params"], feature_config=feature_config, seed=seed
        ),
        train,
        y,
    )
    serving_pipeline = build_serving_pipeline(fitted, feature_config)

    oof = pd.read_csv(args.oof)
    decision_threshold = select_threshold(
        oof[TARGET].to_numpy(),
        oof["oof_probability"].to_numpy(),
        policy=policy.policy,
        target_recall=policy.target_recall,
        harm_benefit_ratio=policy.harm_benefit_ratio,
    )
    cv_at_threshold = threshold_metrics(
        oof[TARGET].to_numpy(), oof["oof_probability"].to_numpy(), decision_threshold
    )
    feature_set, _ = split_params(tuning["best_params"])
    metadata = {
        "model_family": family,
        "params": tuning["best_params"],
        "feature_set": feature_set,
        "decision_threshold": decision_threshold,
        "threshold_policy": policy.model_dump(),
        "threshold_cv_metrics": {k: round(v, 6) for k, v in cv_at_threshold.items()},
        "cv_metrics": tuning["cv"],
        "feature_config": asdict(feature_config),
        "feature_schema": [asdict(spec) for spec in FEATURES],
        "training_data_sha256": file_sha256(args.train),
        "training_rows": int(len(train)),
        "training_prevalence": round(float(y.mean()), 6),
        "library_versions": library_versions(),
    }
    with atomic_path(args.model) as temporary:
        joblib.dump(serving_pipeline, temporary)
        # The service's copy, exported before anything is renamed into place (a pipeline it
        # cannot express writes nothing) and bound to the pipeline by the pipeline's md5,
        # the model version MLflow and releases.json know it by.
        serving_model = serving_model_bytes(export_pipeline(serving_pipeline, file_md5(temporary)))
    with atomic_path(args.serving_model) as temporary:
        temporary.write_bytes(serving_model)
    write_json(args.metadata, metadata)


if __name__ == "__main__":
    run_stage("train", main)
