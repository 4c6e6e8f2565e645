"""MLflow logging for the train and evaluate stages (never imported by the server)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MODEL_HASH_TAG = "model_md5"


def configure_mlflow() -> Any:
    """Import mlflow with telemetry off and the tracking URI set (env var wins)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    import mlflow

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))
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


def log_training_run(
    *,
    experiment: str,
    registered_model: str,
    alias: str,
    model: Any,
    model_md5: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    artifacts: list[str],
    code_paths: list[str],
    pip_requirements: list[str],
) -> tuple[str, str]:
    """Log a run with the model, register a new version and point `alias` at it.

    Returns (run_id, model_version). The run is tagged with the model file's md5 so
    evaluate can find it again without a run id in any DVC-tracked file.
    """
    mlflow = configure_mlflow()
    import skops.io
    from mlflow.tracking import MlflowClient

    mlflow.set_experiment(experiment)
    # MLflow stores sklearn models with skops, which refuses types it does not know;
    # the model was built by this process, so its own types are trusted.
    trusted_types = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    all_tags = {**tags, MODEL_HASH_TAG: model_md5}
    with mlflow.start_run(tags=all_tags) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(dict(metrics))
        for path in artifacts:
            mlflow.log_artifact(path)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            code_paths=code_paths,
            pip_requirements=pip_requirements,
            skops_trusted_types=trusted_types,
        )
    client = MlflowClient()
    version = mlflow.register_model(info.model_uri, registered_model, tags=all_tags)
    client.set_registered_model_alias(registered_model, alias, version.version)
    return run.info.run_id, str(version.version)


def log_evaluation(
    *, experiment: str, model_md5: str, metrics: Mapping[str, float], artifacts: list[str]
) -> str | None:
    """Add test metrics to the newest run of this model file; returns its run id or None."""
    mlflow = configure_mlflow()
    found = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=f"tags.{MODEL_HASH_TAG} = '{model_md5}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    if not found:
        return None
    run_id = found[0].info.run_id
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(dict(metrics))
        for path in artifacts:
            mlflow.log_artifact(path)
    return run_id
