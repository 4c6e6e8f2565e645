"""`make sync` / `make copy-runs`: log this model revision to MLflow, or copy runs.

The library it calls: stroke_risk.tracking.mlflow_runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stroke_risk.tracking.mlflow_runs import (
    RevisionFiles,
    copy_runs,
    log_model_revision,
    tracking_uri,
)


def main(argv: list[str] | None = None) -> None:
    """`python -m stroke_risk.commands.mlflow_runs sync`: make sure the workspace's model is logged;
    `... copy --to URI`: copy this repository's runs to another store (a shared server)."""
    parser = argparse.ArgumentParser(prog="python -m stroke_risk.commands.mlflow_runs")
    parser.add_argument("command", choices=["sync", "copy"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--to", dest="destination", help="copy: the destination tracking URI")
    parser.add_argument(
        "--from", dest="source", help="copy: the source (default: this repository's store)"
    )
    args = parser.parse_args(argv)
    if args.command == "copy":
        _copy_command(args.source or tracking_uri(), args.destination)
    else:
        _sync_command(args.params)


def _copy_command(source: str, destination: str | None) -> None:
    from stroke_risk.tracking.server import TrackingServerError

    if not destination:
        sys.exit("usage: python -m stroke_risk.commands.mlflow_runs copy --to URI [--from URI]")
    if source == destination:
        sys.exit(f"tracking copy: source and destination are the same store ({source})")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        report = copy_runs(source, destination)
    except TrackingServerError as error:
        print(f"tracking copy failed: {error}", file=sys.stderr)
        sys.exit(1)
    print(
        f"MLflow {source} -> {destination}: copied {len(report.copied)} run(s)"
        + (f" ({', '.join(report.copied)})" if report.copied else "")
        + f", {len(report.skipped)} already there"
    )


def _sync_command(params_file: str) -> None:
    from stroke_risk.io import load_params
    from stroke_risk.params import MlflowParams, ParamsError, read_section
    from stroke_risk.tracking.server import TrackingServerError

    files = RevisionFiles()
    try:
        settings = read_section(load_params(params_file), "mlflow", MlflowParams)
        missing = [str(p) for p in vars(files).values() if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"missing {', '.join(missing)}: run `dvc repro` first")
        logged = log_model_revision(files, **settings.model_dump())
    except (ParamsError, FileNotFoundError, TrackingServerError) as error:
        print(f"tracking sync failed: {error}", file=sys.stderr)
        sys.exit(1)
    state = "logged" if logged.changed else "already logged"
    print(
        f"MLflow ({tracking_uri()}): run {logged.run_id} {state}; "
        f"{settings.registered_model} version {logged.version} is @{settings.alias}"
    )


if __name__ == "__main__":
    main()
