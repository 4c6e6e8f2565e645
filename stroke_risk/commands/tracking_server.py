"""`make tracking-server`: a shared MLflow tracking server on PostgreSQL.

The library it calls: stroke_risk.tracking.server (and tracking.object_store for --artifacts).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stroke_risk.tracking.object_store import ObjectStoreError, artifact_destination
from stroke_risk.tracking.server import (
    ADMIN_PASSWORD_ENV,
    ADMIN_PASSWORD_FILE,
    ADMIN_USER,
    DEFAULT_DB_USER,
    DEFAULT_STATE_DIR,
    PostgresCluster,
    TrackingServerError,
    auth_env,
    check_exposure,
    database_password,
    init_optuna_schema,
    mlflow_server,
    wait_for_stop_signal,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stroke_risk.commands.tracking_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the team")
    parser.add_argument(
        "--port", type=int, default=5001, help="MLflow server port (5000 is the service)"
    )
    parser.add_argument("--pg-port", type=int, default=5433, help="local PostgreSQL port")
    parser.add_argument(
        "--backend-store-uri",
        help="an existing PostgreSQL database (no password in it); default: a local cluster",
    )
    parser.add_argument("--allowed-hosts", help="extra Host headers the server accepts")
    parser.add_argument(
        "--artifacts",
        help="s3://BUCKET/PATH on S3-compatible storage (MLFLOW_S3_ENDPOINT_URL, AWS_* keys); "
        "default: STATE_DIR/artifacts",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="run MLflow's basic-auth app (required for a --host other than loopback)",
    )
    args = parser.parse_args(argv)
    state = args.state_dir.resolve()
    try:
        check_exposure(args.host, args.auth)
        artifacts = artifact_destination(args.artifacts, state)
    except (TrackingServerError, ObjectStoreError) as error:
        print(f"tracking-server: {error}", file=sys.stderr)
        return 1
    cluster: PostgresCluster | None = None
    started: PostgresCluster | None = None  # only a cluster this process started is stopped
    try:
        pgpass = state / "pgpass"
        if args.backend_store_uri:
            backend = args.backend_store_uri
            password = database_password(pgpass, _url_user(backend), create=False)
        else:
            listen = "*" if args.host == "0.0.0.0" else "127.0.0.1"
            cluster = PostgresCluster(state / "postgres", args.pg_port, listen=listen)
            password = database_password(pgpass, cluster.user, create=not cluster.initialised())
            if not cluster.initialised():
                print(f"creating PostgreSQL cluster in {cluster.data_dir}")
                cluster.init(password)
            cluster.start()
            started = cluster
            cluster.ensure_databases(password)
            init_optuna_schema(cluster.url("optuna"), password)
            backend = cluster.url("mlflow")
        log_path = state / "mlflow-server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with mlflow_server(
            backend_store_uri=backend,
            artifacts_destination=artifacts,
            password=password,
            host=args.host,
            port=args.port,
            log_path=log_path,
            allowed_hosts=args.allowed_hosts,
            extra_env=auth_env(state) if args.auth else None,
            auth=args.auth,
        ) as url:
            print(f"MLflow tracking server: {url} (backend {backend}, log {log_path})")
            print(f"  artifacts: {artifacts} (served through the server)")
            if args.auth:
                source = (
                    ADMIN_PASSWORD_ENV
                    if os.environ.get(ADMIN_PASSWORD_ENV)
                    else state / ADMIN_PASSWORD_FILE
                )
                print(
                    f"  basic auth: user {ADMIN_USER}, password from {source}; clients set "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
                )
            print(f"  pipeline:  MLFLOW_TRACKING_URI={url} dvc repro")
            if cluster is not None:
                print(
                    f"  tuning:    PGPASSFILE={pgpass} (or PGPASSWORD) with "
                    f"tune.storage={cluster.url('optuna')}"
                )
            print("Ctrl-C stops the server" + (" and PostgreSQL" if cluster else ""))
            wait_for_stop_signal()
    except TrackingServerError as error:
        print(f"tracking-server: {error}", file=sys.stderr)
        return 1
    finally:
        if started is not None:
            started.stop()
    return 0


def _url_user(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.password:
        raise TrackingServerError(
            "--backend-store-uri must not contain a password: use PGPASSWORD or PGPASSFILE"
        )
    if not parsed.drivername.startswith("postgresql"):
        raise TrackingServerError(
            f"--backend-store-uri must be a PostgreSQL URL, not {parsed.drivername}"
        )
    return parsed.username or DEFAULT_DB_USER


if __name__ == "__main__":
    sys.exit(main())
