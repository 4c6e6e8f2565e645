"""MLflow tracking of model revisions (never imported by the server).

One evaluated model revision = one MLflow run (params, CV and test metrics, tags) and one
registered version whose artifacts include the exact `models/model.joblib` that dvc.lock
names. Logging is idempotent, keyed by the model file's md5: rerunning the pipeline, a
queued or temporary `dvc exp run`, or `python -m stroke_risk.commands.mlflow_runs sync` after a
fresh
clone never adds a duplicate, and always completes a run that lacks its test metrics.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stroke_risk import paths
from stroke_risk.cli import StageError
from stroke_risk.data.load import file_md5
from stroke_risk.params import MlflowParams
from stroke_risk.run_files import flatten, git_reader

MODEL_HASH_TAG = "model_md5"
# The threshold lives in the metadata: the same model file with another threshold is
# another revision (other decisions), so a run is keyed by both hashes.
METADATA_HASH_TAG = "metadata_md5"
VERSION_TAG = "registered_version"
# DVC runs queued and temporary experiments in <repo>/.dvc/tmp/exps/<workspace>.
DVC_TEMP_WORKSPACE = (".dvc", "tmp", "exps")
# `dvc exp run` (plain, --temp or queued) sets it to the experiment's name (-n or DVC's).
DVC_EXP_NAME_VARIABLE = "DVC_EXP_NAME"
WORKSPACE_RUN = "workspace"
# An experiment's Git ref: refs/exps/<baseline sha split 2/38>/<name>.
EXPERIMENT_REF = re.compile(r"refs/exps/[0-9a-f]{2}/[0-9a-f]{38}/(?P<name>[^/]+)")
# Set on a run `copy` wrote: the run it copies, so a second copy skips it.
SOURCE_RUN_TAG = "copied_from_run_id"


@dataclass(frozen=True)
class RevisionFiles:
    """The pipeline outputs that describe one model revision."""

    model: Path = Path(paths.MODEL)
    metadata: Path = Path(paths.MODEL_METADATA)
    tuning: Path = Path(paths.TUNING_REPORT)
    metrics: Path = Path(paths.METRICS)
    evaluation: Path = Path(paths.EVALUATION)
    data_summary: Path = Path(paths.DATA_SUMMARY)

    def under(self, root: Path) -> RevisionFiles:
        return RevisionFiles(**{name: root / path for name, path in vars(self).items()})


@dataclass(frozen=True)
class LoggedRevision:
    run_id: str
    version: str
    changed: bool  # False when the run already existed complete (a no-op)


def repository_root(cwd: Path | None = None) -> Path:
    """The repository whose store a run belongs to, also from inside a DVC temp workspace."""
    parts = (cwd or Path.cwd()).resolve().parts
    for i in range(len(parts) - len(DVC_TEMP_WORKSPACE)):
        if parts[i : i + len(DVC_TEMP_WORKSPACE)] == DVC_TEMP_WORKSPACE:
            return Path(*parts[:i])
    return Path(*parts)


def project_tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI if set, else the store of the project at root: its `mlflow.db`
    (absolute path)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root.resolve() / 'mlflow.db'}"


def tracking_uri(cwd: Path | None = None) -> str:
    """The tracking URI of the workspace this process runs in (cwd by default):
    project_tracking_uri of its repository, found also from inside a DVC temp workspace."""
    return project_tracking_uri(repository_root(cwd))


def configure_mlflow() -> Any:
    """Import mlflow with telemetry off and the tracking URI set.

    A tracking server is asked for /health first: MLflow's client would retry an
    unreachable one for minutes before failing.
    """
    from stroke_risk.tracking.server import check_tracking_uri

    check_tracking_uri(tracking_uri())
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def git_commit() -> str:
    """HEAD commit, suffixed '-dirty' when the work tree has changes; 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def experiment_with_outputs(model_md5: str, metadata_md5: str) -> str | None:
    """The DVC experiment whose dvc.lock records this model and metadata, else None.

    After `dvc exp apply NAME` the workspace holds NAME's outputs but DVC_EXP_NAME is unset;
    this keeps `make sync` from logging them as `workspace`. Experiments are Git refs under
    refs/exps/<baseline>/<name>; the first match in ref order wins.
    """
    listed = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        return None
    for ref in listed.stdout.split():
        if not EXPERIMENT_REF.fullmatch(ref):  # DVC's queue and executor refs live there too
            continue
        lock = git_reader(Path.cwd(), ref)("dvc.lock")
        if lock is not None and model_md5 in lock and metadata_md5 in lock:
            return ref.rsplit("/", 1)[-1]
    return None


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """{"test": {"roc_auc": x}} -> {"test_roc_auc": x}; numbers only (bools excluded)."""
    return {
        name: float(value)
        for name, value in flatten(metrics, separator="_").items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def revision_record(files: RevisionFiles) -> dict[str, Any]:
    """What MLflow gets for a revision: params, metrics and tags, read from the outputs."""
    metadata = json.loads(files.metadata.read_text())
    tuning = json.loads(files.tuning.read_text())
    metrics = json.loads(files.metrics.read_text())
    summary = json.loads(files.data_summary.read_text())
    params = {
        "model_family": metadata["model_family"],
        **metadata["params"],
        **{f"threshold_{k}": v for k, v in metadata["threshold_policy"].items()},
        "decision_threshold": metadata["decision_threshold"],
        "tune_n_trials": tuning["n_trials"],
        "tune_metric": tuning["metric"],
        "data_source": summary.get("source", "unknown"),
    }
    model_md5, metadata_md5 = file_md5(files.model), file_md5(files.metadata)
    tags = {
        MODEL_HASH_TAG: model_md5,
        METADATA_HASH_TAG: metadata_md5,
        "git_commit": git_commit(),
        "dvc_experiment": os.environ.get(DVC_EXP_NAME_VARIABLE)
        or experiment_with_outputs(model_md5, metadata_md5)
        or WORKSPACE_RUN,
        "model_family": metadata["model_family"],
        "data_source": str(summary.get("source", "unknown")),
        "data_sha256": str(summary.get("raw_sha256", "unknown")),
        "python_version": platform.python_version(),
    }
    return {"params": params, "metrics": flat_metrics(metrics), "tags": tags}


def run_name(tags: Mapping[str, str]) -> str:
    """The MLflow run name of a revision: the DVC experiment's name, so the MLflow UI and
    `dvc exp show` agree; `workspace@<commit>` for a plain `dvc repro` or `make sync`."""
    experiment = tags["dvc_experiment"]
    if experiment != WORKSPACE_RUN:
        return experiment
    return f"{WORKSPACE_RUN}@{tags['git_commit'][:7]}"


def _experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    artifact_location = None
    if "MLFLOW_TRACKING_URI" not in os.environ:
        # Next to the repository's mlflow.db, never in a DVC temp workspace that is deleted.
        artifact_location = (repository_root() / "mlruns" / name).as_uri()
    return str(client.create_experiment(name, artifact_location=artifact_location))


def log_model_revision(
    files: RevisionFiles, *, experiment: str, registered_model: str, alias: str
) -> LoggedRevision:
    """Log the revision once (run + registered version + alias); complete it if partial.

    The registered version is tagged with the model file's md5, so a release can find the
    version of a given dvc.lock.
    """
    mlflow = configure_mlflow()
    from mlflow.tracking import MlflowClient

    record = revision_record(files)
    md5, metadata_md5 = record["tags"][MODEL_HASH_TAG], record["tags"][METADATA_HASH_TAG]
    client = MlflowClient()
    experiment_id = _experiment_id(client, experiment)
    existing = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.{MODEL_HASH_TAG} = '{md5}' and tags.{METADATA_HASH_TAG} = '{metadata_md5}'"
        ),
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if existing:
        run = existing[0]
        stale = {k: v for k, v in record["metrics"].items() if run.data.metrics.get(k) != v}
        if stale:
            with mlflow.start_run(run_id=run.info.run_id):
                mlflow.log_metrics(stale)
        version = run.data.tags.get(VERSION_TAG)
        if version is None:
            version = _register(mlflow, client, run.info.run_id, registered_model, md5)
        client.set_registered_model_alias(registered_model, alias, version)
        return LoggedRevision(run.info.run_id, version, changed=bool(stale))

    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name(record["tags"]), tags=record["tags"]
    ) as active:
        mlflow.log_params({k: str(v)[:500] for k, v in record["params"].items()})
        mlflow.log_metrics(record["metrics"])
        for path in (files.metadata, files.tuning, files.metrics, files.evaluation):
            mlflow.log_artifact(str(path))
        _log_pyfunc_model(mlflow, files)
        run_id = active.info.run_id
    version = _register(mlflow, client, run_id, registered_model, md5)
    client.set_registered_model_alias(registered_model, alias, version)
    return LoggedRevision(run_id, version, changed=True)


def log_evaluated_revision(files: RevisionFiles, settings: MlflowParams) -> str:
    """Log the evaluate stage's revision (log_model_revision); return the line it prints.

    Any failure (store unreachable, bad credentials) becomes a StageError of one line that
    says how to fix it, so the stage prints no traceback.
    """
    try:
        logged = log_model_revision(files, **settings.model_dump())
    except Exception as error:
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)
        raise StageError(
            f"MLflow logging failed ({reason}); check MLFLOW_TRACKING_URI "
            f"or unset it to use the repository's mlflow.db"
        ) from None
    return (
        f"MLflow ({tracking_uri().split('@')[-1]}): run {logged.run_id}, "
        f"{settings.registered_model} version {logged.version} is @{settings.alias}"
    )


def log_update_revision(
    *,
    uri: str,
    model: Path,
    metadata: Path,
    evidence: Path,
    experiment: str,
    registered_model: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
) -> str:
    """Log an update of the deployed model (stage `update`'s models/updated/) as one run and
    registered version, pyfunc like train's, tagged with its md5s so a release finds it;
    returns the registered version. `make release MODEL=updated` calls it once the gates
    passed (train's revisions are logged by evaluate; an update has no evaluate stage).
    `evidence` is the held-out figures the gates read, kept with the run."""
    from stroke_risk.tracking.server import check_tracking_uri

    check_tracking_uri(uri)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    all_tags = {
        MODEL_HASH_TAG: file_md5(model),
        METADATA_HASH_TAG: file_md5(metadata),
        "git_commit": git_commit(),
        **tags,
    }
    with mlflow.start_run(
        experiment_id=_experiment_id(client, experiment),
        run_name=f"update@{all_tags['git_commit'][:7]}",
        tags=all_tags,
    ) as active:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(flat_metrics(metrics))
        for path in (metadata, evidence):
            mlflow.log_artifact(str(path))
        _log_pyfunc_model(mlflow, RevisionFiles(model=model, metadata=metadata))
        run_id = active.info.run_id
    return _register(mlflow, client, run_id, registered_model, all_tags[MODEL_HASH_TAG])


def _register(mlflow: Any, client: Any, run_id: str, registered_model: str, md5: str) -> str:
    version = mlflow.register_model(
        f"runs:/{run_id}/model", registered_model, tags={MODEL_HASH_TAG: md5}
    )
    client.set_tag(run_id, VERSION_TAG, str(version.version))
    return str(version.version)


def _log_pyfunc_model(mlflow: Any, files: RevisionFiles) -> None:
    import pandas as pd
    from mlflow.models import infer_signature

    from stroke_risk.data.schema import EXAMPLE_RECORD
    from stroke_risk.models.environment import pip_requirements
    from stroke_risk.models.pyfunc import StrokeRiskModel, predict_frame

    example = pd.DataFrame([EXAMPLE_RECORD])
    metadata = json.loads(files.metadata.read_text())
    output = predict_frame(_load_pipeline(files.model), metadata["decision_threshold"], example)
    package = Path(__file__).resolve().parents[1]  # the whole stroke_risk package
    mlflow.pyfunc.log_model(
        name="model",
        python_model=StrokeRiskModel(),
        artifacts={"model": str(files.model), "metadata": str(files.metadata)},
        code_paths=[str(package)],
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=pip_requirements(),
    )


def _load_pipeline(path: Path) -> Any:
    import joblib

    return joblib.load(path)


@dataclass(frozen=True)
class CopyReport:
    """What `copy_runs` did: run names copied, and those the destination already had."""

    copied: tuple[str, ...]
    skipped: tuple[str, ...]


def _revision_key(tags: Mapping[str, str]) -> tuple[str, str] | None:
    if MODEL_HASH_TAG in tags and METADATA_HASH_TAG in tags:
        return tags[MODEL_HASH_TAG], tags[METADATA_HASH_TAG]
    return None


def _artifact_location(destination_uri: str, experiment: str) -> str | None:
    """Next to a SQLite store's file (MLflow would use ./mlruns of the current directory);
    a tracking server chooses its own (proxied) artifact store."""
    prefix = "sqlite:///"
    if not destination_uri.startswith(prefix):
        return None
    return (Path(destination_uri[len(prefix) :]).parent / "mlruns" / experiment).as_uri()


def copy_runs(source_uri: str, destination_uri: str) -> CopyReport:
    """Copy every active run of `source_uri` into `destination_uri`, idempotently.

    A run keeps its experiment, name, start and end time, status, tags, params, full metric
    history, artifacts, logged model and registered version (a new version number at the
    destination, tagged `registered_version`; aliases are not copied: the destination's
    releases own them). A run is skipped when the destination already holds the same model
    revision (same `model_md5` and `metadata_md5`, however it got there) or a copy of it.
    """
    from stroke_risk.tracking.server import check_tracking_uri

    check_tracking_uri(destination_uri)
    import mlflow

    # The registry resolves a version's `models:/m-...` source in the *current* tracking
    # store, whatever the client's: make it the destination while copying.
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(destination_uri)
    try:
        return _copy_all_runs(source_uri, destination_uri)
    finally:
        mlflow.set_tracking_uri(previous_uri)


def _copy_all_runs(source_uri: str, destination_uri: str) -> CopyReport:
    import tempfile

    from mlflow import MlflowClient
    from mlflow.entities import Param, ViewType

    source = MlflowClient(tracking_uri=source_uri, registry_uri=source_uri)
    destination = MlflowClient(tracking_uri=destination_uri, registry_uri=destination_uri)
    copied: list[str] = []
    skipped: list[str] = []
    for experiment in source.search_experiments(view_type=ViewType.ACTIVE_ONLY):
        runs = _all_runs(source, experiment.experiment_id)
        if not runs:
            continue
        found = destination.get_experiment_by_name(experiment.name)
        experiment_id = (
            found.experiment_id
            if found is not None
            else destination.create_experiment(
                experiment.name,
                artifact_location=_artifact_location(destination_uri, experiment.name),
            )
        )
        present = _all_runs(destination, experiment_id)
        present_keys = {_revision_key(run.data.tags) for run in present} - {None}
        present_sources = {run.data.tags.get(SOURCE_RUN_TAG) for run in present} - {None}
        for run in runs:
            key = _revision_key(run.data.tags)
            if run.info.run_id in present_sources or (key is not None and key in present_keys):
                skipped.append(run.info.run_name)
                continue
            tags = {k: v for k, v in run.data.tags.items() if k != VERSION_TAG}
            tags[SOURCE_RUN_TAG] = run.info.run_id
            new = destination.create_run(
                experiment_id,
                start_time=run.info.start_time,
                tags=tags,
                run_name=run.info.run_name,
            )
            new_id = new.info.run_id
            params = [Param(k, v) for k, v in run.data.params.items()]
            for start in range(0, len(params), 100):  # MLflow's batch limit for params
                destination.log_batch(new_id, params=params[start : start + 100])
            history = [
                point
                for key_name in run.data.metrics
                for point in source.get_metric_history(run.info.run_id, key_name)
            ]
            for start in range(0, len(history), 1000):
                destination.log_batch(new_id, metrics=history[start : start + 1000])
            with tempfile.TemporaryDirectory() as scratch:
                if source.list_artifacts(run.info.run_id):
                    local = source.download_artifacts(run.info.run_id, "", scratch)
                    destination.log_artifacts(new_id, local)
                _copy_models(source, destination, run, new_id, experiment_id, source_uri)
            destination.set_terminated(new_id, run.info.status, run.info.end_time)
            copied.append(run.info.run_name)
    return CopyReport(tuple(copied), tuple(skipped))


def _all_runs(client: Any, experiment_id: str) -> list[Any]:
    from mlflow.entities import ViewType

    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            run_view_type=ViewType.ACTIVE_ONLY,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _copy_models(
    source: Any, destination: Any, run: Any, new_run_id: str, experiment_id: str, source_uri: str
) -> None:
    """The run's logged models (MLflow 3 keeps them outside the run's artifacts) and the
    registered versions made from them."""
    import tempfile

    import mlflow

    versions = source.search_model_versions(f"run_id = '{run.info.run_id}'")
    logged = source.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    for model in logged:
        copy = destination.create_logged_model(
            experiment_id,
            name=model.name,
            source_run_id=new_run_id,
            tags=model.tags,
            params=model.params,
            model_type=model.model_type,
        )
        with tempfile.TemporaryDirectory() as scratch:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=model.artifact_location, dst_path=scratch, tracking_uri=source_uri
            )
            destination.log_model_artifacts(copy.model_id, local)
        destination.finalize_logged_model(copy.model_id, "READY")
        for version in versions:
            # A SQLite store leaves model_id unset on versions; the source names the model.
            if model.model_id not in (version.model_id, version.source.removeprefix("models:/")):
                continue
            if destination.search_registered_models(f"name = '{version.name}'") == []:
                destination.create_registered_model(version.name)
            new_version = destination.create_model_version(
                version.name,
                source=f"models:/{copy.model_id}",
                run_id=new_run_id,
                tags=version.tags,
                model_id=copy.model_id,
            )
            destination.set_tag(new_run_id, VERSION_TAG, str(new_version.version))
