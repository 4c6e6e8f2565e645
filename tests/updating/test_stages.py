"""The validate_outcomes and update stages on the repository's model, outputs in tmp_path.

Outcome sets are planted: the model's own probabilities on the test split, resampled, with
outcomes drawn from a known truth, and the model version the service would have logged.
"""

import importlib
import json
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest

from app.compiled import check_probe
from app.explanations import build_explainer
from app.model import build_scorer
from stroke_risk.data.load import file_md5
from stroke_risk.data.prepared import read_prepared
from stroke_risk.data.schema import TARGET
from stroke_risk.models.serving_artifact import read_serving_model
from stroke_risk.updating.collect import write_outcomes
from stroke_risk.updating.protocol import Recalibration
from stroke_risk.updating.recalibrated import recalibrated_pipeline, recalibrated_threshold
from tests.conftest import REPO_ROOT
from tests.updating.planted import planted_outcomes

MODEL = REPO_ROOT / "models/model.joblib"


def call_stage(monkeypatch, name: str, *args: str) -> None:
    """Run a stage's main() in this process (the stage's own start-up cost is paid once)."""
    module = importlib.import_module(f"stages.{name}")
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "argv", [name, *args])
    module.main()


def run_stage(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"stages.{name}", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def stage_paths(tmp_path) -> list[str]:
    return [
        "--outcomes",
        str(tmp_path / "outcomes"),
        "--out",
        str(tmp_path / "reports"),
    ]


def test_recalibrated_pipeline_scores_as_the_recalibration():
    pipeline = joblib.load(MODEL)
    frame = read_prepared(REPO_ROOT / "data/prepared/test.csv").drop(columns=[TARGET])
    update = Recalibration(intercept=0.4, slope=0.7)
    original = pipeline.predict_proba(frame)[:, 1]
    updated = recalibrated_pipeline(pipeline, update).predict_proba(frame)[:, 1]
    assert updated == pytest.approx(update.probability(original), abs=1e-9)
    assert pipeline.predict_proba(frame)[:, 1] == pytest.approx(original)  # not modified
    threshold = recalibrated_threshold(0.05, update)
    assert np.array_equal(original >= 0.05, updated >= threshold)


@pytest.mark.integration
def test_no_labels_reports_so_and_passes(tmp_path):
    write_outcomes(
        tmp_path / "outcomes",
        pd.DataFrame(
            columns=[
                "prediction_id",
                "created_at",
                "labelled_at",
                "model_version",
                "probability",
                "decision",
                "label",
            ]
        ),
        {"labels": 0},
    )
    validated = run_stage(
        "validate_outcomes", *stage_paths(tmp_path), "--curve", str(tmp_path / "curve.csv")
    )
    assert validated.returncode == 0, validated.stderr
    assert "no outcome labels yet" in (tmp_path / "reports/validation.md").read_text().lower()
    updated = run_stage("update", *stage_paths(tmp_path), "--updated", str(tmp_path / "updated"))
    assert updated.returncode == 0, updated.stderr
    decision = json.loads((tmp_path / "reports/update.json").read_text())
    assert decision["method"] == "keep" and decision["labels"] == 0
    # The model to serve is train's, byte for byte.
    for name in ("model.joblib", "serving_model.npz"):
        assert (tmp_path / "updated" / name).read_bytes() == (
            REPO_ROOT / "models" / name
        ).read_bytes()
    metadata = json.loads((tmp_path / "updated/model_metadata.json").read_text())
    assert metadata["update"]["method"] == "keep"


def test_doubled_prevalence_gives_a_recalibrated_model_with_training_artifacts(
    tmp_path, monkeypatch
):
    planted_outcomes(tmp_path / "outcomes", n=5000, shift=0.8)
    call_stage(
        monkeypatch,
        "validate_outcomes",
        *stage_paths(tmp_path),
        "--curve",
        str(tmp_path / "curve.csv"),
    )
    validation = json.loads((tmp_path / "reports/validation.json").read_text())
    assert validation["holds"] is False and "under-predicts" in validation["verdict"]
    assert len(pd.read_csv(tmp_path / "curve.csv")) > 0
    call_stage(
        monkeypatch, "update", *stage_paths(tmp_path), "--updated", str(tmp_path / "updated")
    )
    decision = json.loads((tmp_path / "reports/update.json").read_text())
    assert decision["method"] == "recalibration_in_the_large", decision["reason"]
    assert decision["intercept"] == pytest.approx(0.8, abs=0.25)
    # The serving artifact proves itself as at the service's start-up, with risk factors.
    serving = read_serving_model((tmp_path / "updated/serving_model.npz").read_bytes())
    assert serving.pipeline_md5 == file_md5(tmp_path / "updated/model.joblib")
    scorer = build_scorer(serving)
    assert check_probe(scorer, serving) < 1e-9
    assert build_explainer(serving, scorer) is not None
    metadata = json.loads((tmp_path / "updated/model_metadata.json").read_text())
    assert metadata["update"]["method"] == "recalibration_in_the_large"
    assert metadata["decision_threshold"] > metadata["update"]["base_decision_threshold"]


@pytest.mark.integration
def test_a_bad_outcome_set_fails_naming_row_and_column(tmp_path):
    planted_outcomes(tmp_path / "outcomes", n=50, shift=0.0)
    path = tmp_path / "outcomes/labelled_predictions.csv"
    path.write_text(path.read_text().replace(",0\n", ",7\n", 1))
    result = run_stage("update", *stage_paths(tmp_path), "--updated", str(tmp_path / "updated"))
    assert result.returncode == 1
    assert "column label" in result.stderr and "Traceback" not in result.stderr


def test_the_service_serves_the_model_the_plan_chose():
    """models/updated/ (the update stage's outputs in this workspace) passes the service's
    dvc.lock verification and start-up proof, and is the model update.json names."""
    from app.model import load_model
    from app.settings import Settings

    settings = Settings.for_project(
        REPO_ROOT,
        model_path="models/updated/serving_model.npz",
        metadata_path="models/updated/model_metadata.json",
    )
    loaded = load_model(settings)
    assert loaded.version == file_md5(REPO_ROOT / "models/updated/model.joblib")
    decision = json.loads((REPO_ROOT / "reports/outcomes/update.json").read_text())
    assert loaded.metadata["update"]["method"] == decision["method"]
    assert loaded.explainer is not None
