"""The real pipeline, run with DVC in a scratch copy of the repository.

Slow by nature (each `dvc repro`/`dvc exp run` starts the stages' Python processes), so
budgets are tiny; figures are checked for sanity, not for quality.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO_ROOT
from tests.pipeline.conftest import TINY, run, workspace_from_template

pytestmark = pytest.mark.e2e
# Only these may differ when nothing but the test labels change.
EVALUATE_OUTPUTS = {"reports/metrics.json", "reports/evaluation.json"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def artifact_digests(root: Path) -> dict[str, str]:
    names = [
        "data/prepared/train.csv",
        "data/features/train.csv",
        "models/reference_profile.json",
        "data/oof/oof_predictions.csv",
        "reports/tuning.json",
        "reports/nested_cv.json",
        "reports/instability.json",
        "models/model.joblib",
        "models/model_metadata.json",
        *EVALUATE_OUTPUTS,
    ]
    return {name: digest(root / name) for name in names}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, pipeline_template) -> Path:
    return workspace_from_template(
        pipeline_template, tmp_path_factory.mktemp("repo"), tmp_path_factory.mktemp("remote")
    )


def test_repro_writes_metrics_with_the_documented_keys(workspace):
    metrics = json.loads((workspace / "reports/metrics.json").read_text())
    for key in ("roc_auc", "average_precision", "brier", "recall", "precision", "f1", "threshold"):
        assert key in metrics["test"], key
    for key in ("roc_auc", "roc_auc_std", "average_precision"):
        assert key in metrics["cv"], key
    assert 0.7 < metrics["test"]["roc_auc"] <= 1.0
    assert 0.7 < metrics["cv"]["roc_auc"] <= 1.0
    assert 0.0 < metrics["test"]["brier"] < 0.06
    assert 0.0 < metrics["test"]["threshold"] < 0.5
    evaluation = json.loads((workspace / "reports/evaluation.json").read_text())
    auc = evaluation["test"]["roc_auc"]
    assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    assert set(evaluation["baselines"]) == {"prevalence", "age_only"}
    assert evaluation["baselines"]["prevalence"]["roc_auc"] == pytest.approx(0.5)
    shown = run(["dvc", "metrics", "show"], workspace).stdout
    assert "test.roc_auc" in shown and "cv.roc_auc" in shown
    status = run(["dvc", "status"], workspace).stdout
    assert "up to date" in status


def test_mlflow_run_is_logged_and_registered(workspace):
    script = (
        "import mlflow\n"
        "mlflow.set_tracking_uri('sqlite:///mlflow.db')\n"
        "client = mlflow.MlflowClient()\n"
        "v = client.get_model_version_by_alias('stroke-risk', 'candidate')\n"
        "run = client.get_run(v.run_id)\n"
        "print(run.data.tags['git_commit'], 'test_roc_auc' in run.data.metrics,"
        " 'cv_roc_auc' in run.data.metrics)\n"
    )
    out = run(["python", "-c", script], workspace).stdout.split()
    # The pipeline ran on the copy's first commit; the fixture then committed its outputs.
    commit = run(["git", "rev-parse", "HEAD~1"], workspace).stdout.strip()
    assert out[0].startswith(commit)
    assert out[1:] == ["True", "True"]


def test_test_labels_influence_only_evaluate(workspace):
    """Permuting the held-out labels must change nothing upstream of evaluate."""
    before = artifact_digests(workspace)
    test_path = workspace / "data/prepared/test.csv"
    original = test_path.read_bytes()
    frame = pd.read_csv(test_path)
    frame["stroke"] = frame["stroke"].sample(frac=1.0, random_state=0).to_numpy()
    frame.to_csv(test_path, index=False, lineterminator="\n")
    try:
        status = json.loads(run(["dvc", "status", "--json"], workspace).stdout)
        with_changed_deps = {
            stage
            for stage, changes in status.items()
            if any("changed deps" in change for change in changes if isinstance(change, dict))
        }
        # prepare reports its own output as modified; only evaluate consumes it.
        assert with_changed_deps == {"evaluate"}
        run(["dvc", "repro", "evaluate", "--single-item"], workspace)
        after = artifact_digests(workspace)
        changed = {name for name in before if before[name] != after[name]}
        assert changed == EVALUATE_OUTPUTS
    finally:
        test_path.write_bytes(original)
        run(["dvc", "repro"], workspace)


def test_experiments_switch_model_family_and_data(workspace):
    # One experiment switches both the model family and the data file (each reruns the whole
    # pipeline); a second switches the data set through the checked entry point.
    crlf = workspace.parent / "outside.csv"
    crlf.write_bytes((REPO_ROOT / "data/raw/brain.csv").read_text().replace("\n", "\r\n").encode())
    run(
        ["dvc", "exp", "run", "-n", "xgb-ext", "-S", "model=xgboost"]
        + ["-S", f"data.raw_path={crlf}", *TINY],
        workspace,
        timeout=600,
    )
    metadata = json.loads((workspace / "models/model_metadata.json").read_text())
    assert metadata["model_family"] == "xgboost"
    summary = json.loads((workspace / "reports/data_summary.json").read_text())
    assert summary["n_rows"] == 4981
    # Provenance comes from the file read, not from a config name left at "brain".
    assert summary["raw_path"] == str(crlf) and summary["known_dataset"] is None
    assert summary["source"] == "outside.csv"
    assert "provenance not recorded" in (workspace / "reports/model_card.md").read_text()

    # Through the checked entry point (make exp): it hands over to dvc exp run unchanged.
    experiment = [sys.executable, "-m", "stroke_risk.commands.exp_run", "run"]
    run([*experiment, "-n", "hc", "-S", "data=healthcare", *TINY], workspace, timeout=600)
    summary = json.loads((workspace / "reports/data_summary.json").read_text())
    assert summary["known_dataset"] == "healthcare" and summary["n_rows"] == 5110
    assert summary["bmi_missing"] == 201
    metadata = json.loads((workspace / "models/model_metadata.json").read_text())
    assert metadata["model_family"] == "logreg"  # from conf/, not left over from xgb-ext

    table = json.loads(run(["dvc", "exp", "show", "--json"], workspace).stdout)
    names = json.dumps(table)
    assert all(f'"{name}"' in names for name in ("xgb-ext", "hc"))
