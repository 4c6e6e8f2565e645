"""Distributed tuning benchmark: the same number of trials with 1 and with 2 workers.

Starts a throwaway PostgreSQL cluster (Debian's postgresql; as root it runs as the
`postgres` user), gives each run its own empty Optuna database, and runs the documented
worker command `python -m stroke_risk.tuning worker` with the repository's params.yaml
(full CV budget; `--n-jobs 1` and one BLAS thread, so each worker uses one core):

- 1 worker x N trials, then 2 workers x N/2 trials started together on one shared study;
- trials per second, from the trials' own start/complete times in the study (start-up of
  the Python processes excluded) and from wall-clock time (included);
- the 2-worker / 1-worker ratio of trials per second (target >= 1.7 on 2 cores).

Needs data/features/train.csv (`dvc repro featurize`). The machine must be otherwise idle
for the ratio to mean anything.

Usage: python -m benchmarks.tuning [--n-trials 12]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stroke_risk.tracking_server import PostgresCluster, free_port, init_optuna_schema

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.7


def run_workers(url: str, password: str, n_workers: int, n_trials: int) -> float:
    """Start n_workers workers sharing n_trials; returns wall-clock seconds until all end."""
    # One core per worker: BLAS threads would otherwise make one worker compete with another.
    threads = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env = {**os.environ, **threads, "PGPASSWORD": password, "MLFLOW_DISABLE_TELEMETRY": "true"}
    per_worker = n_trials // n_workers
    start = time.perf_counter()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stroke_risk.tuning",
                "worker",
                "--storage",
                url,
                "--n-trials",
                str(per_worker),
                "--worker-index",
                str(index),
                "--n-jobs",
                "1",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(n_workers)
    ]
    for worker in workers:
        _, stderr = worker.communicate()
        if worker.returncode != 0:
            sys.exit(f"worker failed: {stderr.strip()}")
    return time.perf_counter() - start


def study_throughput(url: str, password: str) -> tuple[int, float]:
    """(complete trials, trials per second between the first start and the last completion)."""
    import optuna

    storage = optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"password": password}}
    )
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    first = min(t.datetime_start for t in complete)
    last = max(t.datetime_complete for t in complete)
    return len(complete), len(complete) / (last - first).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=12, help="even; split over 2 workers")
    args = parser.parse_args()
    if args.n_trials < 2 or args.n_trials % 2:
        sys.exit("--n-trials must be an even number >= 2")
    if not (REPO_ROOT / "data/features/train.csv").is_file():
        sys.exit("data/features/train.csv is missing: run `dvc repro featurize` first")
    state = Path(tempfile.mkdtemp(prefix="stroke-tuning-bench-"))
    password = secrets.token_urlsafe(16)
    cluster = PostgresCluster(state / "postgres", free_port())
    try:
        cluster.init(password)
        cluster.start()
        cluster.ensure_databases(password, names=("one_worker", "two_workers"))
        results = {}
        for n_workers, database in ((1, "one_worker"), (2, "two_workers")):
            url = cluster.url(database)
            init_optuna_schema(url, password)
            wall = run_workers(url, password, n_workers, args.n_trials)
            trials, rate = study_throughput(url, password)
            results[n_workers] = (rate, args.n_trials / wall)
            print(
                f"{n_workers} worker{'s' if n_workers > 1 else ' '}: {trials} trials, "
                f"{rate:.2f} trials/s in the study, {args.n_trials / wall:.2f} trials/s "
                f"wall-clock ({wall:.1f} s incl. start-up)"
            )
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
    ratio, wall_ratio = (results[2][i] / results[1][i] for i in (0, 1))
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(
        f"2 vs 1 workers: {ratio:.2f}x trials/s in the study ({verdict} the {TARGET_RATIO}x "
        f"target), {wall_ratio:.2f}x wall-clock; {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
