"""Stage tune: Optuna search of the model family's space by repeated CV on train only.

Reads params: model.family, cv, tune, featurize (feature definitions), train.seed; the
family's search space from conf/search_space/<family>.yaml.
Writes: reports/tuning.json (best params, the trials they came from, per-fold scores of the
best trial, CV summary), data/oof/oof_predictions.csv (out-of-fold probabilities of the
best params).
"""

from __future__ import annotations

import argparse

import pandas as pd

from stroke_risk import paths
from stroke_risk.cli import run_stage
from stroke_risk.data.prepared import read_prepared
from stroke_risk.data.schema import TARGET
from stroke_risk.io import load_params, write_csv, write_json
from stroke_risk.models.tuning import (
    evaluate_params,
    run_study,
    study_spec_from_params,
    tuning_report,
)
from stroke_risk.params import TuneParams, read_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default=paths.PARAMS)
    parser.add_argument("--train", default=paths.FEATURES_TRAIN)
    parser.add_argument("--report", default=paths.TUNING_REPORT)
    parser.add_argument("--oof", default=paths.OOF_PREDICTIONS)
    args = parser.parse_args()
    params = load_params(args.params)
    tune = read_section(params, "tune", TuneParams)
    spec = study_spec_from_params(params, args.train)

    train = read_prepared(args.train)
    y = train.pop(TARGET).to_numpy()
    study = run_study(
        spec, train, y, n_trials=tune.n_trials, n_jobs=tune.n_jobs, storage=tune.storage
    )
    # Re-run the best trial's CV: gives its per-fold scores and out-of-fold predictions
    # without storing thousands of predictions per trial in the study.
    best = evaluate_params(
        spec.family,
        study.best_params,
        train,
        y,
        cv=spec.cv,
        feature_config=spec.feature_config,
        seed=spec.model_seed,
        n_jobs=tune.n_jobs,
    )
    write_csv(args.oof, pd.DataFrame({TARGET: y, "oof_probability": best.oof_probability}))
    write_json(args.report, tuning_report(study, best, spec=spec, n_trials=tune.n_trials))


if __name__ == "__main__":
    run_stage("tune", main)
