"""Stage validate_outcomes: the deployed model on the outcomes it met (data/outcomes/).

Reads params: updating (minimum events, bootstrap). Reads the collected outcome set (make
collect-labels), the model (its md5 is the version the service logged), its decision
threshold and the held-out test split's predictions (the development estimates). Writes
reports/outcomes/validation.json (metrics), reports/outcomes/validation.md and
reports/plots/outcome_calibration.csv. With no labels (a fresh clone) or too few, it writes
the report saying so and succeeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from stroke_risk import paths
from stroke_risk.cli import run_stage
from stroke_risk.data.load import file_md5
from stroke_risk.io import load_params, write_csv, write_json, write_text
from stroke_risk.reports.outcomes_report import validation_document, validation_markdown
from stroke_risk.updating.collect import read_outcomes, rows_of_version
from stroke_risk.updating.protocol import count_events
from stroke_risk.updating.settings import updating_params
from stroke_risk.updating.validation import (
    calibration_curve,
    roc_auc_difference,
    validation_statistics,
    verdict,
)

CURVE_COLUMNS = ["predicted", "observed", "ci_low", "ci_high", "perfect"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--outcomes", type=Path, default=Path(paths.OUTCOMES_DIR))
    parser.add_argument("--model", default=paths.MODEL)
    parser.add_argument("--metadata", default=paths.MODEL_METADATA)
    parser.add_argument("--test-predictions", default=paths.TEST_PREDICTIONS)
    parser.add_argument("--out", type=Path, default=Path(paths.OUTCOME_REPORTS_DIR))
    parser.add_argument("--curve", default=paths.OUTCOME_CALIBRATION)
    args = parser.parse_args()
    plan = updating_params(load_params(args.params))
    model_version = file_md5(args.model)
    threshold = float(json.loads(Path(args.metadata).read_text())["decision_threshold"])
    test = pd.read_csv(args.test_predictions)
    y_development = test["stroke"].to_numpy()
    p_development = test["probability"].to_numpy()
    rows, other_versions = rows_of_version(read_outcomes(args.outcomes), model_version)
    y = rows["label"].to_numpy()
    probability = rows["probability"].to_numpy()
    events = count_events(
        y,
        min_events=plan.min_events,
        min_non_events=plan.min_non_events,
        expected_prevalence=json.loads(Path(args.metadata).read_text()).get("training_prevalence"),
    )
    development = validation_statistics(
        y_development,
        p_development,
        decision_threshold=threshold,
        n_resamples=plan.bootstrap_resamples,
        seed=plan.bootstrap_seed,
    )
    statistics = verdict_of = None
    curve = pd.DataFrame(columns=CURVE_COLUMNS)
    if events.sufficient:
        statistics = validation_statistics(
            y,
            probability,
            decision_threshold=threshold,
            n_resamples=plan.bootstrap_resamples,
            seed=plan.bootstrap_seed,
        )
        statistics["roc_auc_difference"] = roc_auc_difference(
            y,
            probability,
            y_development,
            p_development,
            n_resamples=plan.bootstrap_resamples,
            seed=plan.bootstrap_seed,
        )
        verdict_of = verdict(statistics, development)
        curve = calibration_curve(
            y, probability, n_resamples=plan.bootstrap_resamples, seed=plan.bootstrap_seed
        )[CURVE_COLUMNS]
    document = validation_document(
        model_version=model_version,
        events=events,
        other_versions=other_versions,
        statistics=statistics,
        development=development,
        verdict=verdict_of,
    )
    write_csv(args.curve, curve)
    write_text(args.out / "validation.md", validation_markdown(document))
    write_json(args.out / "validation.json", document)
    print(document.get("verdict", document["status"]))


if __name__ == "__main__":
    run_stage("validate_outcomes", main)
