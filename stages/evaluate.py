"""Stage evaluate: the only stage that reads the test split.

Reads params: evaluate.*, mlflow.*.
Reads: the prepared splits, the model and its metadata, reports/tuning.json and the
out-of-fold predictions (for calibration and decision curves out of fold),
reports/nested_cv.json and reports/instability.json (internal validation, copied into the
metrics and the evaluation).
Writes: reports/metrics.json (flat, stable keys for `dvc metrics`), reports/evaluation.json
(CIs, baselines, calibration, decision curves, subgroups), reports/plots/*.csv (for
`dvc plots`), reports/test_predictions.csv (for paired comparisons between experiments);
the contracts are built by stroke_risk/reports/evaluation_reports.py. Then logs the
evaluated model revision to MLflow once (run, registered version, alias).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import pandas as pd

from stroke_risk import paths
from stroke_risk.cli import run_stage
from stroke_risk.data.load import file_sha256
from stroke_risk.data.prepared import read_prepared
from stroke_risk.io import load_params, read_json, write_csv, write_json
from stroke_risk.params import EvaluateParams, MlflowParams, read_section
from stroke_risk.reports.evaluation_reports import (
    evaluate_on_test,
    evaluation_plot_tables,
    evaluation_report,
    metrics_report,
    predictions_table,
)
from stroke_risk.tracking.mlflow_runs import RevisionFiles, log_evaluated_revision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default=paths.PARAMS)
    parser.add_argument("--train", default=paths.PREPARED_TRAIN)
    parser.add_argument("--test", default=paths.PREPARED_TEST)
    parser.add_argument("--model", default=paths.MODEL)
    parser.add_argument("--metadata", default=paths.MODEL_METADATA)
    parser.add_argument("--tuning", default=paths.TUNING_REPORT)
    parser.add_argument("--oof", default=paths.OOF_PREDICTIONS)
    parser.add_argument("--predictions", default=paths.TEST_PREDICTIONS)
    parser.add_argument("--metrics", default=paths.METRICS)
    parser.add_argument("--evaluation", default=paths.EVALUATION)
    parser.add_argument("--plots", default=paths.PLOTS_DIR)
    parser.add_argument("--data-summary", default=paths.DATA_SUMMARY)
    parser.add_argument("--nested-cv", default=paths.NESTED_CV_REPORT)
    parser.add_argument("--instability", default=paths.INSTABILITY_SUMMARY)
    args = parser.parse_args()
    params = load_params(args.params)
    settings = read_section(params, "evaluate", EvaluateParams)
    tracking = read_section(params, "mlflow", MlflowParams)
    metadata, tuning = read_json(args.metadata), read_json(args.tuning)
    nested_cv, instability = read_json(args.nested_cv), read_json(args.instability)
    train, test = read_prepared(args.train), read_prepared(args.test)

    result = evaluate_on_test(
        joblib.load(args.model),
        test,
        pd.read_csv(args.oof),
        metadata=metadata,
        settings=settings,
    )
    write_json(
        args.metrics,
        metrics_report(result, tuning=tuning, nested_cv=nested_cv, instability=instability),
    )
    write_json(
        args.evaluation,
        evaluation_report(
            result,
            train=train,
            test=test,
            metadata=metadata,
            nested_cv=nested_cv,
            instability=instability,
            provenance={
                "train_sha256": file_sha256(args.train),
                "test_sha256": file_sha256(args.test),
            },
        ),
    )
    for name, table in evaluation_plot_tables(result).items():
        write_csv(f"{args.plots}/{name}.csv", table)
    write_csv(args.predictions, predictions_table(result))

    files = RevisionFiles(
        model=Path(args.model),
        metadata=Path(args.metadata),
        tuning=Path(args.tuning),
        metrics=Path(args.metrics),
        evaluation=Path(args.evaluation),
        data_summary=Path(args.data_summary),
    )
    print(log_evaluated_revision(files, tracking))


if __name__ == "__main__":
    run_stage("evaluate", main)
