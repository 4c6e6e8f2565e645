"""Stage instability: prediction instability of the tuned model (Riley & Collins 2023).

Refits the tuned pipeline (reports/tuning.json's best params, train.seed) on bootstrap
resamples of the training split, without re-tuning, and compares each refit's predictions
for every training patient with the model fitted on the whole split.

Reads params: model.family, train.seed, featurize (feature definitions), instability.*.
Reads: data/features/train.csv, reports/tuning.json.
Writes: reports/instability.json (method and summary, MAPE), reports/instability.csv (one
row per training patient: original prediction, bootstrap 2.5/50/97.5 %, MAPE_i; the data
of the report stage's instability plot).
"""

from __future__ import annotations

import argparse
import json
from functools import partial

from stroke_risk.cli import run_stage
from stroke_risk.data.prepared import feature_config_from_params, read_prepared
from stroke_risk.data.schema import TARGET
from stroke_risk.evaluation.instability import METHOD, instability_summary, per_patient_instability
from stroke_risk.io import load_params, write_csv, write_json
from stroke_risk.models.bootstrap_refits import bootstrap_predictions
from stroke_risk.models.pipelines import build_model_pipeline
from stroke_risk.params import (
    FeaturizeParams,
    InstabilityParams,
    ModelParams,
    TrainParams,
    read_section,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train", default="data/features/train.csv")
    parser.add_argument("--tuning", default="reports/tuning.json")
    parser.add_argument("--summary", default="reports/instability.json")
    parser.add_argument("--table", default="reports/instability.csv")
    args = parser.parse_args()
    params = load_params(args.params)
    family = read_section(params, "model", ModelParams).family
    seed = read_section(params, "train", TrainParams).seed
    featurize = read_section(params, "featurize", FeaturizeParams)
    settings = read_section(params, "instability", InstabilityParams)
    with open(args.tuning) as handle:
        tuning = json.load(handle)
    if tuning["family"] != family:
        raise ValueError(f"{args.tuning} was tuned for {tuning['family']}, not {family}")

    train = read_prepared(args.train)
    y = train.pop(TARGET).to_numpy()
    make_pipeline = partial(
        build_model_pipeline,
        family,
        tuning["best_params"],
        feature_config=feature_config_from_params(featurize.model_dump()),
        seed=seed,
    )
    original, bootstrap = bootstrap_predictions(
        make_pipeline,
        train,
        y,
        n_bootstrap=settings.n_bootstrap,
        seed=settings.seed,
        n_jobs=settings.n_jobs,
    )
    summary = instability_summary(original, bootstrap)
    write_csv(args.table, per_patient_instability(original, bootstrap).round(6))
    write_json(
        args.summary,
        {
            "method": METHOD,
            "n_bootstrap": settings.n_bootstrap,
            "seed": settings.seed,
            "patients": len(y),
            **{name: round(value, 6) for name, value in summary.items()},
        },
    )
    print(f"prediction instability: MAPE {summary['mape']:.4f} over {settings.n_bootstrap} refits")


if __name__ == "__main__":
    run_stage("instability", main)
