"""Stage update: apply the change-control plan to the collected outcomes.

Reads params: updating (the plan). Reads data/outcomes/ (make collect-labels) and the
trained model. Writes reports/outcomes/update.json (metrics: the method chosen and the
evidence), reports/outcomes/update.md, and models/updated/ - the model the plan says to
serve, as the files train writes (model.joblib, serving_model.npz with its probe proof,
model_metadata.json with an ``update`` block): the recalibrated model when an update is
accepted (threshold mapped to the new scale), else byte copies of train's model and serving
artifact. dvc.lock records each file, so the service verifies them as it does train's. And
the held-out evidence the release gates read (stroke_risk/updating/holdout.py):
reports/outcomes/update_holdout.json (figures, in git; the per-patient rows behind them are
patient data and are not written: the release command recomputes them).
train's own outputs are never touched, so the pipeline stays a DAG; README "Outcome labels"
says how an update is served and released.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import joblib

from stroke_risk import paths
from stroke_risk.cli import run_stage
from stroke_risk.data.load import file_md5
from stroke_risk.evaluation.metrics import rounded
from stroke_risk.io import atomic_path, load_params, write_json, write_text
from stroke_risk.models.serving_artifact import export_pipeline, serving_model_bytes
from stroke_risk.reports.outcomes_report import decision_document, decision_markdown
from stroke_risk.updating.collect import read_outcomes, rows_of_version
from stroke_risk.updating.holdout import decision_and_evidence
from stroke_risk.updating.protocol import Decision
from stroke_risk.updating.recalibrated import recalibrated_pipeline, recalibrated_threshold
from stroke_risk.updating.settings import protocol_from_params, updating_params


def write_updated_artifacts(
    directory: Path,
    decision: Decision,
    *,
    model_path: str,
    serving_model_path: str,
    metadata: dict[str, Any],
    base_version: str,
) -> None:
    """model.joblib, serving_model.npz and model_metadata.json of the model to serve."""
    update = {
        "base_model_version": base_version,
        "method": decision.method,
        "intercept": decision.recalibration.intercept,
        "slope": decision.recalibration.slope,
        "base_decision_threshold": metadata["decision_threshold"],
        "labels": decision.events.labels,
        "events": decision.events.events,
    }
    if not decision.updated:
        shutil.copyfile(model_path, directory / "model.joblib")
        shutil.copyfile(serving_model_path, directory / "serving_model.npz")
        write_json(directory / "model_metadata.json", {**metadata, "update": update})
        return
    pipeline = recalibrated_pipeline(joblib.load(model_path), decision.recalibration)
    with atomic_path(directory / "model.joblib") as temporary:
        joblib.dump(pipeline, temporary)
        serving = serving_model_bytes(export_pipeline(pipeline, file_md5(temporary)))
    with atomic_path(directory / "serving_model.npz") as temporary:
        temporary.write_bytes(serving)
    threshold = recalibrated_threshold(metadata["decision_threshold"], decision.recalibration)
    write_json(
        directory / "model_metadata.json",
        {**metadata, "decision_threshold": threshold, "update": update},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--outcomes", type=Path, default=Path(paths.OUTCOMES_DIR))
    parser.add_argument("--model", default=paths.MODEL)
    parser.add_argument("--serving-model", default=paths.SERVING_MODEL)
    parser.add_argument("--metadata", default=paths.MODEL_METADATA)
    parser.add_argument("--updated", type=Path, default=Path(paths.UPDATED_DIR))
    parser.add_argument("--out", type=Path, default=Path(paths.OUTCOME_REPORTS_DIR))
    args = parser.parse_args()
    params = load_params(args.params)
    protocol, plan = protocol_from_params(params), updating_params(params)
    metadata = json.loads(Path(args.metadata).read_text())
    model_version = file_md5(args.model)
    rows, other_versions = rows_of_version(read_outcomes(args.outcomes), model_version)
    decision, evidence = decision_and_evidence(
        rows["label"].to_numpy(),
        rows["probability"].to_numpy(),
        metadata,
        protocol,
        base_model_version=model_version,
        n_resamples=plan.bootstrap_resamples,
        seed=plan.bootstrap_seed,
    )
    args.updated.mkdir(parents=True, exist_ok=True)
    write_updated_artifacts(
        args.updated,
        decision,
        model_path=args.model,
        serving_model_path=args.serving_model,
        metadata=metadata,
        base_version=model_version,
    )
    # Rounded like evaluate's reports: the last digits follow the machine's BLAS kernel.
    write_json(args.out / Path(paths.UPDATE_HOLDOUT).name, rounded(evidence.document))
    document = decision_document(
        decision,
        model_version=model_version,
        other_versions=other_versions,
        artifacts=str(args.updated),
    )
    write_text(args.out / "update.md", decision_markdown(document))
    write_json(args.out / "update.json", document)
    print(f"update: {decision.method} ({decision.reason})")


if __name__ == "__main__":
    run_stage("update", main)
