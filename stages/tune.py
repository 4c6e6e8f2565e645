"""Stage tune: Optuna search of the model family's space by repeated CV on train only.

Reads params: model, cv, tune, featurize (feature definitions), train.seed.
Writes: reports/tuning.json (best params, per-fold scores of the best trial, CV summary),
data/oof/oof_predictions.csv (out-of-fold probabilities of the best params).
"""

from __future__ import annotations

import argparse

import pandas as pd

from stroke_risk.cli import StageError, run_stage
from stroke_risk.data import file_sha256
from stroke_risk.io import load_params, write_csv, write_json
from stroke_risk.schema import TARGET
from stroke_risk.settings import feature_config_from_params, read_prepared
from stroke_risk.tuning import CVSettings, evaluate_params, run_study, study_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train", default="data/features/train.csv")
    parser.add_argument("--report", default="reports/tuning.json")
    parser.add_argument("--oof", default="data/oof/oof_predictions.csv")
    args = parser.parse_args()
    params = load_params(args.params)
    model, tune = params["model"], params["tune"]
    cv = CVSettings(**params["cv"])
    feature_config = feature_config_from_params(params["featurize"])
    if tune["n_trials"] < 1:
        raise StageError(f"tune.n_trials must be at least 1, got {tune['n_trials']}")

    train = read_prepared(args.train)
    y = train.pop(TARGET).to_numpy()
    fingerprint = {
        "model": model,
        "cv": params["cv"],
        "featurize": feature_config,
        "metric": tune["metric"],
        "sampler_seed": tune["sampler_seed"],
        "model_seed": params["train"]["seed"],
        "train_sha256": file_sha256(args.train),
    }
    name = study_name(model["family"], fingerprint)
    study = run_study(
        family=model["family"],
        fixed_params=model.get("fixed") or {},
        search_space=model["search_space"],
        X=train,
        y=y,
        cv=cv,
        feature_config=feature_config,
        metric=tune["metric"],
        n_trials=tune["n_trials"],
        sampler_seed=tune["sampler_seed"],
        model_seed=params["train"]["seed"],
        n_jobs=tune["n_jobs"],
        storage=tune["storage"],
        name=name,
    )
    best_params = {**(model.get("fixed") or {}), **study.best_trial.params}
    # Re-run the best trial's CV: gives its per-fold scores and out-of-fold predictions
    # without storing thousands of predictions per trial in the study.
    best = evaluate_params(
        model["family"],
        best_params,
        train,
        y,
        cv=cv,
        feature_config=feature_config,
        seed=params["train"]["seed"],
        n_jobs=tune["n_jobs"],
    )
    write_csv(args.oof, pd.DataFrame({TARGET: y, "oof_probability": best.oof_probability}))
    write_json(
        args.report,
        {
            "study_name": name,
            "family": model["family"],
            "metric": tune["metric"],
            "n_trials": tune["n_trials"],
            "best_params": best_params,
            "cv": {
                "roc_auc": round(best.mean("roc_auc"), 6),
                "roc_auc_std": round(best.std("roc_auc"), 6),
                "average_precision": round(best.mean("average_precision"), 6),
                "average_precision_std": round(best.std("average_precision"), 6),
                "brier": round(best.mean("brier"), 6),
                "brier_std": round(best.std("brier"), 6),
            },
            "fold_scores": [
                {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fold.items()}
                for fold in best.fold_scores
            ],
        },
    )


if __name__ == "__main__":
    run_stage("tune", main)
