"""Distributed tuning benchmark: the same number of trials with 1 and with 2 workers.

Starts a throwaway PostgreSQL cluster (Debian's postgresql; as root it runs as the
`postgres` user), gives each run its own empty Optuna database, and runs the documented
worker command `python -m stroke_risk.commands.tuning_worker` with the repository's params.yaml
(full CV budget; `--n-jobs 1` and one BLAS thread, so each worker uses one core):

- 1 worker x N trials, then 2 workers x N/2 trials started together on one shared study,
  alternating for --repeats rounds (the best round of each counts: other processes on a
  shared machine only ever slow a round down);
- trials per second, from the trials' own start/complete times in the study (start-up of
  the Python processes excluded) and from wall-clock time (included);
- the 2-worker / 1-worker ratio of trials per second (target >= 1.7 on 2 cores).

Needs data/features/train.csv (`dvc repro featurize`). The machine must be otherwise idle
for the ratio to mean anything.

Usage: python -m benchmarks.tuning [--n-trials 16] [--repeats 3]
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

from stroke_risk.ports import free_port
from stroke_risk.tracking.server import PostgresCluster, init_optuna_schema

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.7


def run_workers(url: str, password: str, n_workers: int, n_trials: int) -> tuple[float, float]:
    """Start n_workers workers sharing n_trials; returns (wall-clock s, CPU s of the workers).

    CPU seconds tell whether the same trials cost more CPU when run side by side (cores
    that share execution units, as vCPUs of a VM may), which no database can fix.
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
                "stroke_risk.commands.tuning_worker",
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
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu


def study_throughput(url: str, password: str) -> tuple[int, float, float]:
    """(complete trials, trials/s from the first start to the last completion, median trial s).

    The median trial time tells contention apart from overhead: with 2 free cores it stays
    the same with 2 workers; when it doubles, the workers are sharing one core's worth.
    """
    import statistics

    import optuna

    storage = optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"password": password}}
    )
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    # A complete trial has both times (optuna types them optional for running trials).
    spans = [
        (t.datetime_start, t.datetime_complete)
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and t.datetime_start is not None
        and t.datetime_complete is not None
    ]
    first = min(start for start, _ in spans)
    last = max(end for _, end in spans)
    durations = [(end - start).total_seconds() for start, end in spans]
    rate = len(spans) / (last - first).total_seconds()
    return len(spans), rate, statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=16, help="even; split over 2 workers")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs; best kept")
    args = parser.parse_args()
    if args.n_trials < 2 or args.n_trials % 2:
        sys.exit("--n-trials must be an even number >= 2")
    if not (REPO_ROOT / "data/features/train.csv").is_file():
        sys.exit("data/features/train.csv is missing: run `dvc repro featurize` first")
    state = Path(tempfile.mkdtemp(prefix="stroke-tuning-bench-"))
    password = secrets.token_urlsafe(16)
    cluster = PostgresCluster(state / "postgres", free_port())
    runs = [(repeat, n_workers) for repeat in range(args.repeats) for n_workers in (1, 2)]
    best: dict[int, tuple[float, float, float]] = {}
    try:
        cluster.init(password)
        cluster.start()
        databases = tuple(f"run_{repeat}_{n_workers}w" for repeat, n_workers in runs)
        cluster.ensure_databases(password, names=databases)
        for (repeat, n_workers), database in zip(runs, databases, strict=True):
            url = cluster.url(database)
            init_optuna_schema(url, password)
            wall, cpu = run_workers(url, password, n_workers, args.n_trials)
            trials, rate, median = study_throughput(url, password)
            print(
                f"run {repeat + 1}, {n_workers} worker{'s' if n_workers > 1 else ' '}: "
                f"{trials} trials, {rate:.2f} trials/s in the study, "
                f"{args.n_trials / wall:.2f} trials/s wall-clock ({wall:.1f} s incl. start-up), "
                f"median trial {median:.2f} s, worker CPU {cpu:.1f} s"
            )
            if n_workers not in best or rate > best[n_workers][0]:
                best[n_workers] = (rate, args.n_trials / wall, median)
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
    ratio, wall_ratio = (best[2][i] / best[1][i] for i in (0, 1))
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(
        f"best of {args.repeats}: 1 worker {best[1][0]:.2f}, 2 workers {best[2][0]:.2f} trials/s; "
        f"2 vs 1 workers: {ratio:.2f}x in the study ({verdict} the {TARGET_RATIO}x target), "
        f"{wall_ratio:.2f}x wall-clock; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} (other processes take cores from the workers)"
    )


if __name__ == "__main__":
    main()
