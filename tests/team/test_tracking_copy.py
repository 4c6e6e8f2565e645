"""MLflow run identity: runs carry the DVC experiment's name, and `copy` sends a local store's
runs to another store (a shared server) with their names, tags, params, metrics, artifacts
and registered model, once.

Real MLflow on two SQLite stores in tmp_path; a PostgreSQL-backed server (`make
tracking-server`) is reached through the same client calls with an http:// URI.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from stroke_risk.tracking.mlflow_runs import (
    METADATA_HASH_TAG,
    MODEL_HASH_TAG,
    SOURCE_RUN_TAG,
    VERSION_TAG,
    RevisionFiles,
    log_model_revision,
)
from tests.conftest import REPO_ROOT
from tests.team.conftest import command_env, run

# Real MLflow stores and its copy command: integration tests (out of `make check`).
pytestmark = pytest.mark.integration
REGISTERED = "stroke-risk"
# The commands run outside the repository (so MLflow writes nothing into it).
ENV = command_env(PYTHONPATH=str(REPO_ROOT))


def revision_copy(target: Path, decision_threshold: float | None = None) -> RevisionFiles:
    """The repository's evaluated revision copied to target (optionally another threshold,
    which makes it another revision)."""
    files = RevisionFiles().under(target)
    for name, path in vars(RevisionFiles()).items():
        destination = getattr(files, name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / path, destination)
    if decision_threshold is not None:
        metadata = json.loads(files.metadata.read_text())
        metadata["decision_threshold"] = decision_threshold
        files.metadata.write_text(json.dumps(metadata))
    return files


@pytest.fixture(scope="module")
def source_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local store with two revisions: one from `dvc repro`, one from `dvc exp run -n r90`."""
    if not (REPO_ROOT / "models" / "model.joblib").is_file():
        pytest.skip("models/model.joblib is missing: run `dvc repro` (or `make pull`) first")
    root = tmp_path_factory.mktemp("source")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    patch = pytest.MonkeyPatch()
    try:
        # MLflow puts a store's default artifacts in ./mlruns: keep them in tmp.
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("DVC_EXP_NAME", raising=False)
        log_model_revision(
            revision_copy(root / "base"), experiment="e", registered_model=REGISTERED, alias="c"
        )
        # What `dvc exp run -n r90` puts in the stage's environment.
        patch.setenv("DVC_EXP_NAME", "r90")
        log_model_revision(
            revision_copy(root / "r90", decision_threshold=0.2),
            experiment="e",
            registered_model=REGISTERED,
            alias="c",
        )
    finally:
        patch.undo()
    return uri


def runs_of(uri: str) -> dict[str, object]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("e")
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


@pytest.mark.scenario
def test_runs_are_named_after_the_dvc_experiment(source_store: str) -> None:
    runs = runs_of(source_store)
    assert "r90" in runs, sorted(runs)
    assert runs["r90"].data.tags["dvc_experiment"] == "r90"
    (workspace,) = [name for name in runs if name != "r90"]
    assert workspace.startswith("workspace@")
    assert runs[workspace].data.tags["dvc_experiment"] == "workspace"


def copy(source: str, destination: str, cwd: Path) -> str:
    command = [sys.executable, "-m", "stroke_risk.commands.mlflow_runs", "copy", "--from", source]
    return run([*command, "--to", destination], cwd, env=ENV, timeout=300).stdout


@pytest.mark.scenario
def test_copy_keeps_identity_and_content_and_is_idempotent(
    source_store: str, tmp_path: Path
) -> None:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from stroke_risk.data.schema import EXAMPLE_RECORD

    destination = f"sqlite:///{tmp_path / 'server.db'}"
    first = copy(source_store, destination, tmp_path)
    assert "copied 2 run(s)" in first and "0 already there" in first
    source_runs, copied_runs = runs_of(source_store), runs_of(destination)
    assert sorted(copied_runs) == sorted(source_runs)
    source_client = MlflowClient(tracking_uri=source_store)
    copied_client = MlflowClient(tracking_uri=destination, registry_uri=destination)
    for name, original in source_runs.items():
        copied = copied_runs[name]
        assert copied.data.params == original.data.params
        assert copied.data.metrics == original.data.metrics
        assert copied.info.start_time == original.info.start_time
        assert copied.info.status == original.info.status
        for tag in (MODEL_HASH_TAG, METADATA_HASH_TAG, "dvc_experiment", "git_commit"):
            assert copied.data.tags[tag] == original.data.tags[tag]
        assert copied.data.tags[SOURCE_RUN_TAG] == original.info.run_id
        artifacts = {a.path for a in copied_client.list_artifacts(copied.info.run_id)}
        assert artifacts == {a.path for a in source_client.list_artifacts(original.info.run_id)}
        assert "metrics.json" in artifacts
        # The registered version at the destination serves the same model file.
        version = copied_client.get_model_version(REGISTERED, copied.data.tags[VERSION_TAG])
        assert version.tags[MODEL_HASH_TAG] == original.data.tags[MODEL_HASH_TAG]
    mlflow.set_tracking_uri(destination)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{REGISTERED}/{version.version}")
    finally:
        mlflow.set_tracking_uri(None)
    answer = model.predict(pd.DataFrame([EXAMPLE_RECORD]))
    assert 0 < float(answer["stroke_probability"].iloc[0]) < 1

    second = copy(source_store, destination, tmp_path)
    assert "copied 0 run(s), 2 already there" in second
    assert len(runs_of(destination)) == 2


@pytest.mark.scenario
def test_copy_skips_a_revision_the_destination_logged_itself(
    source_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination = f"sqlite:///{tmp_path / 'server.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", destination)
    monkeypatch.setenv("DVC_EXP_NAME", "r90")
    revision = revision_copy(tmp_path / "r90", decision_threshold=0.2)
    log_model_revision(revision, experiment="e", registered_model=REGISTERED, alias="c")
    output = copy(source_store, destination, tmp_path)
    assert "copied 1 run(s)" in output and "1 already there" in output
    assert sorted(runs_of(destination)) == sorted(runs_of(source_store))


@pytest.mark.scenario
def test_copy_to_the_same_store_is_refused(source_store: str, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "stroke_risk.commands.mlflow_runs",
        "copy",
        "--from",
        source_store,
    ]
    result = run([*command, "--to", source_store], tmp_path, check=False, env=ENV)
    assert result.returncode != 0
    assert "source and destination are the same store" in result.stderr


@pytest.mark.scenario
def test_an_applied_experiment_is_synced_under_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dvc exp apply NAME && make sync` (no DVC_EXP_NAME): the run still says NAME."""
    from stroke_risk.data.load import file_md5
    from stroke_risk.tracking.mlflow_runs import revision_record, run_name

    files = revision_copy(tmp_path / "outputs")
    repo = tmp_path / "repo"
    repo.mkdir()
    # An experiment ref as `dvc exp run -n r90` leaves it: a commit whose dvc.lock has the outputs.
    (repo / "dvc.lock").write_text(
        f"models/model.joblib: {file_md5(files.model)}\n"
        f"models/model_metadata.json: {file_md5(files.metadata)}\n"
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run([*git, "init", "-q"], repo)
    run([*git, "add", "dvc.lock"], repo)
    run([*git, "commit", "-qm", "exp"], repo)
    commit = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    run(["git", "update-ref", f"refs/exps/{commit[:2]}/{commit[2:]}/r90", commit], repo)
    run(["git", "update-ref", "refs/exps/celery/stash", commit], repo)
    monkeypatch.chdir(repo)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    tags = revision_record(files)["tags"]
    assert tags["dvc_experiment"] == "r90" and run_name(tags) == "r90"
    # Another revision (another threshold) is no experiment's: the workspace.
    other = revision_copy(tmp_path / "other", decision_threshold=0.3)
    assert revision_record(other)["tags"]["dvc_experiment"] == "workspace"
