"""Benchmark the prediction log's backends and what durability costs, in the same run.

    python -m benchmarks.prediction_log [--duration 8] [--rounds 3]

Four services (gunicorn, app/gunicorn_conf.py, 2 workers, the working tree's model, as
`make serve` runs it) are started side by side on loopback ports and loaded in turns
(rounds: wrk 8 connections on the single-record POST /predict, then a sequential p50),
so the machine's noise hits every one alike:

- SQLite log, journal on (the default) and off (STROKE_MONITOR_JOURNAL=false);
- PostgreSQL log (a local cluster started here, initdb + pg_ctl as
  stroke_risk.tracking.server.PostgresCluster does it, connected as the least-privileged
  service role), journal on and off.

Printed: req/s and p50 of each (median of rounds), and the ratios PostgreSQL / SQLite
(journal on; target >= 0.9x) and journal on / off per backend (durability's cost), and
the rows each log holds after the load. Temporary files go to a folder that is removed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.serving import Running, load_in_turns, start_service
from stroke_risk.ports import free_port

TARGETS = {"postgres_over_sqlite": 0.9}
SERVICE_ROLE = "stroke_service"


@contextmanager
def local_postgres(workdir: Path) -> Iterator[str]:
    """A PostgreSQL cluster set up for the prediction log; yields the service role's URL
    (passwords in a pgpass file named by PGPASSFILE for this process and its children)."""
    import psycopg

    from stroke_risk.monitoring.postgres_log import create_service_role, setup_schema
    from stroke_risk.tracking.server import PostgresCluster, pgpass_line

    cluster = PostgresCluster(data_dir=workdir / "postgres", port=free_port(), user="owner")
    owner_password, service_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    pgpass = workdir / "pgpass"
    pgpass.write_text(
        pgpass_line("owner", owner_password) + pgpass_line(SERVICE_ROLE, service_password)
    )
    pgpass.chmod(0o600)
    os.environ["PGPASSFILE"] = str(pgpass)
    cluster.init(owner_password)
    cluster.start()
    try:
        base = f"postgresql://{{}}@{cluster.host}:{cluster.port}"
        create_service_role(base.format("owner") + "/postgres", SERVICE_ROLE, service_password)
        with psycopg.connect(base.format("owner") + "/postgres", autocommit=True) as connection:
            connection.execute("CREATE DATABASE predictions")
        setup_schema(base.format("owner") + "/predictions", SERVICE_ROLE)
        yield base.format(SERVICE_ROLE) + "/predictions"
    finally:
        cluster.stop()


def stored_count(name: str, workdir: Path, database_url: str) -> int:
    from stroke_risk.monitoring.log_backend import open_prediction_log

    store = open_prediction_log(
        path=workdir / name / "predictions.sqlite",
        database_url=database_url if name.startswith("postgresql") else None,
    )
    try:
        return store.count()
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prediction_log")
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per turn")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-prediction-log-"))
    servers: dict[str, Running] = {}
    try:
        with local_postgres(workdir) as database_url:
            for backend in ("sqlite", "postgresql"):
                for journal in ("on", "off"):
                    name = f"{backend}, journal {journal}"
                    folder = workdir / name
                    folder.mkdir()
                    env = {
                        "STROKE_MONITOR_DB": str(folder / "predictions.sqlite"),
                        "STROKE_MONITOR_JOURNAL": "true" if journal == "on" else "false",
                        "STROKE_ACCESS_LOG": "",
                    }
                    if backend == "postgresql":
                        # Both PostgreSQL services share one database (ids never collide).
                        env["STROKE_MONITOR_DATABASE_URL"] = database_url
                    servers[name] = start_service(workdir, **env)
            figures = load_in_turns(servers, args.rounds, args.duration, workdir, sequential=300)
            time.sleep(1.0)  # every buffer flushed
            report(figures)
            # Both PostgreSQL services write to the one database.
            postgres_rows = stored_count("postgresql, journal on", workdir, database_url)
            sqlite_rows = sum(
                stored_count(f"sqlite, journal {j}", workdir, "") for j in ("on", "off")
            )
            print(f"rows stored: SQLite logs {sqlite_rows}, PostgreSQL log {postgres_rows}")
            for server in servers.values():
                server.stop()
            servers.clear()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(figures: dict[str, dict[str, list[float]]]) -> None:
    rps = {name: statistics.median(f["requests_per_second"]) for name, f in figures.items()}
    p50 = {name: statistics.median(f["p50_ms"]) for name, f in figures.items()}
    errors = {name: sum(f["errors"]) for name, f in figures.items()}
    print("prediction log (in turns, median of rounds; wrk 8 connections, then sequential p50):")
    print(f"  {'service':<26}{'req/s':>10}{'p50 ms':>10}{'errors':>8}")
    for name in figures:
        print(f"  {name:<26}{rps[name]:>10.0f}{p50[name]:>10.2f}{errors[name]:>8.0f}")
    ratio = rps["postgresql, journal on"] / rps["sqlite, journal on"]
    target = TARGETS["postgres_over_sqlite"]
    verdict = "meets" if ratio >= target else "MISSES"
    print(f"  PostgreSQL / SQLite req/s (journal on): {ratio:.2f}x ({verdict} >= {target}x)")
    for backend in ("sqlite", "postgresql"):
        cost = rps[f"{backend}, journal on"] / rps[f"{backend}, journal off"]
        print(f"  {backend}: journal on / off req/s: {cost:.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
