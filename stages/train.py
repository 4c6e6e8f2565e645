"""Stage train: fit the tuned pipeline on the whole training split; pick the threshold.

Reads params: model.family, threshold.*, train.seed, featurize (feature definitions), mlflow.*.
Writes: models/model.joblib (raw fields -> probability), models/model_metadata.json;
logs an MLflow run and registers a model version with an alias.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from dataclasses import asdict
from importlib import metadata as importlib_metadata

import joblib
import pandas as pd

from stroke_risk.cli import run_stage
from stroke_risk.data import file_md5, file_sha256
from stroke_risk.evaluation import select_threshold, threshold_metrics
from stroke_risk.io import atomic_path, load_params, write_json
from stroke_risk.modeling import build_model_pipeline, build_serving_pipeline, split_params
from stroke_risk.schema import FEATURES, TARGET
from stroke_risk.settings import feature_config_from_params, read_prepared

LIBRARIES = ("scikit-learn", "xgboost-cpu", "numpy", "pandas", "scipy", "joblib")


def library_versions() -> dict[str, str]:
    """Versions that shape the fitted model. Python's patch level is left out: machines with
    the same lock but another 3.11.x must write the same metadata (MLflow gets the full one)."""
    versions = {"python": ".".join(platform.python_version_tuple()[:2])}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train", default="data/features/train.csv")
    parser.add_argument("--tuning", default="reports/tuning.json")
    parser.add_argument("--oof", default="data/oof/oof_predictions.csv")
    parser.add_argument("--model", default="models/model.joblib")
    parser.add_argument("--metadata", default="models/model_metadata.json")
    args = parser.parse_args()
    params = load_params(args.params)
    family = params["model"]["family"]
    feature_config = feature_config_from_params(params["featurize"])
    with open(args.tuning) as handle:
        tuning = json.load(handle)
    if tuning["family"] != family:
        raise ValueError(f"{args.tuning} was tuned for {tuning['family']}, not {family}")

    train = read_prepared(args.train)
    y = train.pop(TARGET).to_numpy()
    fitted = build_model_pipeline(
        family, tuning["best_params"], feature_config=feature_config, seed=params["train"]["seed"]
    ).fit(train, y)
    serving_pipeline = build_serving_pipeline(fitted, feature_config)

    oof = pd.read_csv(args.oof)
    policy = params["threshold"]
    decision_threshold = select_threshold(
        oof[TARGET].to_numpy(),
        oof["oof_probability"].to_numpy(),
        policy=policy["policy"],
        target_recall=policy["target_recall"],
        harm_benefit_ratio=policy.get("harm_benefit_ratio"),
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
        "threshold_policy": {"policy": policy["policy"], "target_recall": policy["target_recall"]},
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
    write_json(args.metadata, metadata)

    from stroke_risk.tracking import git_commit, log_training_run

    mlflow_params = params["mlflow"]
    run_id, version = log_training_run(
        experiment=mlflow_params["experiment"],
        registered_model=mlflow_params["registered_model"],
        alias=mlflow_params["alias"],
        model=serving_pipeline,
        model_md5=file_md5(args.model),
        params={
            "model_family": family,
            **tuning["best_params"],
            **{f"threshold_{k}": v for k, v in policy.items()},
            "decision_threshold": decision_threshold,
        },
        metrics={f"cv_{k}": v for k, v in tuning["cv"].items()}
        | {f"cv_{k}_at_threshold": v for k, v in cv_at_threshold.items()},
        tags={
            "git_commit": git_commit(),
            "dvc_experiment": os.environ.get("DVC_EXP_NAME", "workspace"),
            "model_family": family,
            "data_source": params.get("data", {}).get("name", "unknown"),
        },
        artifacts=[args.metadata, args.tuning],
        code_paths=["stroke_risk"],
        pip_requirements=[
            f"{name}=={version}"
            for name, version in library_versions().items()
            if name != "python" and version != "not installed"
        ],
    )
    registered = f"{mlflow_params['registered_model']} version {version}"
    print(f"MLflow run {run_id}; registered {registered} as @{mlflow_params['alias']}")


if __name__ == "__main__":
    run_stage("train", main)
