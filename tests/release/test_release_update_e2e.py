"""`make release MODEL=updated` for real, in a scratch copy of the repository: train's model
released, outcome labels planted for it (prevalence doubled), real `dvc repro update`, a local
DVC remote, the MLflow store, the release command as make runs it. The tests run in order and
share the scratch repository (helpers of test_release_e2e.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from stroke_risk import paths
from stroke_risk.release.publish import release_for_model
from tests.pipeline.conftest import workspace_from_template
from tests.release.test_release_e2e import (
    alias_version,
    commit_all,
    locked_model_md5,
    refused,
    release_key,  # noqa: F401 - the module's signing key (autouse)
    run,
    with_no_release,
)
from tests.updating.planted import planted_outcomes

pytestmark = pytest.mark.e2e


def release_updated(root: Path, version: str):
    return run(
        [sys.executable, "-m", "stroke_risk.commands.release", version, "--model", "updated"],
        root,
        check=False,
    )


def locked_md5(root: Path, stage: str, path: str) -> str:
    import yaml

    outs = yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage]["outs"]
    return next(out["md5"] for out in outs if out["path"] == path)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, pipeline_template) -> Path:
    """The pipeline run and committed, train's model released as 1.0.0 (@production)."""
    root = workspace_from_template(
        pipeline_template,
        tmp_path_factory.mktemp("update-release-repo"),
        tmp_path_factory.mktemp("dvc-remote"),
    )
    with_no_release(root)
    run(["dvc", "push", "-q"], root)
    result = run([sys.executable, "-m", "stroke_risk.commands.release", "1.0.0"], root, check=False)
    assert result.returncode == 0, result.stderr
    return root


def plant_doubled_risk(root: Path) -> None:
    """Labels the base model met: its own test-split risks, outcomes at twice the odds."""
    planted_outcomes(
        root / paths.OUTCOMES_DIR,
        n=4000,
        shift=float(np.log(2.2)),
        seed=5,
        predictions=root / paths.TEST_PREDICTIONS,
        model_version=locked_model_md5(root),
    )


def test_a_kept_model_is_not_released_as_an_update(repo):
    # The repository ships no outcome labels: the plan kept the model.
    line = refused(repo, "1.1.0")  # train's model: already released
    assert "already the latest release" in line
    result = release_updated(repo, "1.1.0")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("release refused: the update stage kept the model (")
    assert "nothing to release beyond it" in line


def test_an_accepted_update_is_gated_on_its_held_out_labels_and_released(repo, release_key):  # noqa: F811
    plant_doubled_risk(repo)
    run(["dvc", "repro"], repo)  # validate_outcomes and update: the rest is current
    update = json.loads((repo / paths.UPDATE_REPORT).read_text())
    assert update["method"] == "recalibration_in_the_large", update["reason"]
    commit_all(repo, "outcome labels and the update")
    # The per-patient held-out rows are patient data: never written (the release reruns them).
    assert sorted(path.name for path in (repo / paths.OUTCOME_REPORTS_DIR).iterdir()) == [
        "update.json",
        "update.md",
        "update_holdout.json",
        "validation.json",
        "validation.md",
    ]
    run(["dvc", "push", "-q"], repo)
    production_before = alias_version(repo)

    result = release_updated(repo, "1.1.0")
    assert result.returncode == 0, result.stderr
    assert "an update (recalibration in the large)" in result.stdout

    model_md5 = locked_md5(repo, "update", paths.UPDATED_MODEL)
    (record, base) = json.loads((repo / "releases.json").read_text())
    assert record["model_md5"] == model_md5 != base["model_md5"]
    assert record["update"]["base_model_md5"] == base["model_md5"]
    assert record["update"]["base_release"] == "1.0.0"
    assert record["update"]["method"] == "recalibration_in_the_large"
    evidence = json.loads((repo / paths.UPDATE_HOLDOUT).read_text())
    assert record["test_metrics"]["roc_auc"] == evidence["test"]["roc_auc"]
    assert [g["gate"] for g in record["gates"] if g["passed"]] == [
        "held-out recall CI lower bound ≥ 0.5",
        "held-out roc_auc CI lower bound > 0.5",
        "calibration slope CI contains 1",
        "not worse than @production",
    ]

    # MLflow: the update registered (pyfunc) and @production moved to it from the base.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo}/mlflow.db")
    production = client.get_model_version_by_alias("stroke-risk", "production")
    assert production.tags["model_md5"] == model_md5
    assert str(production.version) == record["registry_version"] != production_before
    assert client.get_run(production.run_id).data.tags["base_model_md5"] == base["model_md5"]

    # The service serving models/updated/ finds this release, signed for its artifacts.
    from stroke_risk.release.signing import check_signed, load_public_key

    metadata_md5 = locked_md5(repo, "update", paths.UPDATED_MODEL_METADATA)
    assert release_for_model(model_md5, repo / "releases.json", metadata_md5) == "1.1.0"
    assert (
        check_signed(
            [record],
            serving_model=(repo / paths.UPDATED_SERVING_MODEL).read_bytes(),
            metadata=(repo / paths.UPDATED_MODEL_METADATA).read_bytes(),
            public_key=load_public_key(release_key),
        )
        == "1.1.0"
    )
    section = (repo / "CHANGELOG.md").read_text().split("## [1.1.0]")[1].split("\n## ")[0]
    assert "by recalibration in the large" in section
    assert "| held-out metric | value | 95 % CI |" in section
