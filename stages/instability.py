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

from stroke_risk import paths
from stroke_risk.cli import run_stage
from stroke_risk.data.prepared import read_prepared
from stroke_risk.data.schema import TARGET
from stroke_risk.evaluation.instability import instability_report, per_patient_instability
from stroke_risk.io import load_params, read_json, write_csv, write_json
from stroke_risk.models.bootstrap_refits import bootstrap_predictions
from stroke_risk.models.tuned_model import tuned_model
from stroke_risk.params import InstabilityParams, read_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default=paths.PARAMS)
    parser.add_argument("--train", default=paths.FEATURES_TRAIN)
    parser.add_argument("--tuning", default=paths.TUNING_REPORT)
    parser.add_argument("--summary", default=paths.INSTABILITY_SUMMARY)
    parser.add_argument("--table", default=paths.INSTABILITY_TABLE)
    args = parser.parse_args()
    params = load_params(args.params)
    settings = read_section(params, "instability", InstabilityParams)
    model = tuned_model(params, read_json(args.tuning), tuning_path=args.tuning)

    train = read_prepared(args.train)
    y = train.pop(TARGET).to_numpy()
    original, bootstrap = bootstrap_predictions(
        model.pipeline,
        train,
        y,
        n_bootstrap=settings.n_bootstrap,
        seed=settings.seed,
        n_jobs=settings.n_jobs,
    )
    report = instability_report(original, bootstrap, seed=settings.seed)
    write_csv(args.table, per_patient_instability(original, bootstrap).round(6))
    write_json(args.summary, report)
    print(f"prediction instability: MAPE {report['mape']:.4f} over {settings.n_bootstrap} refits")


if __name__ == "__main__":
    run_stage("instability", main)
