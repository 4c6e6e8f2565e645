"""S3-compatible object storage on this machine (`serve`) and the DVC remote setup for it.

The library it calls: stroke_risk.tracking.object_store.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from stroke_risk.tracking.object_store import (
    DEFAULT_REMOTE_NAME,
    DEFAULT_STATE_DIR,
    LOOPBACK,
    MLFLOW_ENDPOINT_ENV,
    ObjectStoreError,
    SeaweedLayout,
    credentials_from_env,
    dvc_remote_commands,
    seaweedfs,
)
from stroke_risk.tracking.server import wait_for_stop_signal


def _serve(args: argparse.Namespace) -> int:
    credentials = credentials_from_env()
    state = args.state_dir.resolve()
    layout = SeaweedLayout.on_free_ports(state, s3_port=args.port, host=args.host)
    log_path = state / "seaweedfs.log"
    state.mkdir(parents=True, exist_ok=True)
    with seaweedfs(layout, credentials, buckets=tuple(args.bucket), log_path=log_path) as url:
        bucket = args.bucket[0]
        print(f"S3 endpoint: {url} (data {layout.data_dir / 'data'}, log {log_path})")
        for command in dvc_remote_commands(url=f"s3://{bucket}/dvc", endpoint_url=url):
            print(f"  DVC remote: {' '.join(command)}")
        print(
            f"  MLflow:     {MLFLOW_ENDPOINT_ENV}={url} make tracking-server "
            f"ARGS='--artifacts s3://{bucket}/mlflow'"
        )
        print("Ctrl-C stops the object store")
        wait_for_stop_signal()
    return 0


def _dvc_remote(args: argparse.Namespace) -> int:
    commands = dvc_remote_commands(url=args.url, endpoint_url=args.endpoint, name=args.name)
    for command in commands:
        print(" ".join(command))
        if args.apply:
            subprocess.run(command, check=True, capture_output=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stroke_risk.commands.object_store", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run SeaweedFS's S3 API on this machine")
    serve.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    serve.add_argument("--host", default=LOOPBACK)
    serve.add_argument("--port", type=int, default=8333, help="the S3 API's port")
    serve.add_argument("--bucket", action="append", default=None, help="bucket(s) to create")
    remote = commands.add_parser("dvc-remote", help="print (or --apply) the DVC remote setup")
    remote.add_argument("--url", required=True, help="s3://BUCKET/PATH")
    remote.add_argument("--endpoint", help="the S3 API's URL when it is not AWS")
    remote.add_argument("--name", default=DEFAULT_REMOTE_NAME)
    remote.add_argument("--apply", action="store_true", help="run the commands here")
    args = parser.parse_args(argv)
    if args.command == "serve" and not args.bucket:
        args.bucket = ["stroke-risk"]
    try:
        return _serve(args) if args.command == "serve" else _dvc_remote(args)
    except (ObjectStoreError, subprocess.CalledProcessError) as error:
        print(f"object-store: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
