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

Then duplicates (`--duplicate-trials N`, 0 skips): 2 workers x N/2 trials on xgboost
(integer, categorical and float parameters; 5-fold CV once, as the share depends on the
sampler and the concurrency, not on the CV budget) with Optuna's plain TPE
(`--no-constant-liar`) and with the constant liar the workers use, in turns, --dup-repeats
rounds each; the share of trials whose parameter set repeats an earlier trial's, exactly
and with floats within 5 % of their range (stroke_risk/models/trial_duplicates.py).

Needs data/features/train.csv (`dvc repro featurize`). The machine must be otherwise idle
for the ratio to mean anything.

Usage: python -m benchmarks.tuning [--n-trials 16] [--repeats 3] [--duplicate-trials 40]
       [--dup-repeats 2] [--skip-throughput]
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

import yaml

from stroke_risk.models.trial_duplicates import duplicate_share
from stroke_risk.models.tuning import load_search_space
from stroke_risk.ports import free_port
from stroke_risk.tracking.server import PostgresCluster, init_optuna_schema

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.7
DUPLICATE_FAMILY = "xgboost"
NEAR_TOLERANCE = 0.05
# A float tolerance of the whole range: only the integer and categorical parameters count.
DISCRETE_ONLY = 1.0


def run_workers(
    url: str,
    password: str,
    n_workers: int,
    n_trials: int,
    *,
    params: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> tuple[float, float]:
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
                *(["--params", str(params)] if params else []),
                *extra_args,
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


def trial_params_in_order(url: str, password: str) -> list[dict]:
    """The parameter sets of the study's complete trials, by trial number."""
    import optuna

    storage = optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"password": password}}
    )
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return [t.params for t in sorted(complete, key=lambda t: t.number)]


def duplicate_params_file(state: Path) -> Path:
    """params.yaml with the xgboost family and one CV repeat (cheaper trials)."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["model"]["family"] = DUPLICATE_FAMILY
    params["cv"]["n_repeats"] = 1
    path = state / "params-duplicates.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def measure_duplicates(
    cluster: PostgresCluster, password: str, state: Path, n_trials: int, repeats: int
) -> None:
    """2 workers without and with the constant liar, in turns; prints the shares."""
    params = duplicate_params_file(state)
    _, search_space = load_search_space(DUPLICATE_FAMILY, REPO_ROOT)
    found: dict[bool, list[list[dict]]] = {False: [], True: []}
    rounds = [(repeat, liar) for repeat in range(repeats) for liar in (False, True)]
    databases = [f"dup_{repeat}_{'liar' if liar else 'plain'}" for repeat, liar in rounds]
    cluster.ensure_databases(password, names=tuple(databases))
    for (repeat, liar), database in zip(rounds, databases, strict=True):
        url = cluster.url(database)
        init_optuna_schema(url, password)
        extra = () if liar else ("--no-constant-liar",)
        wall, _ = run_workers(url, password, 2, n_trials, params=params, extra_args=extra)
        trials = trial_params_in_order(url, password)
        found[liar].append(trials)
        print(
            f"duplicates round {repeat + 1}, {'constant liar' if liar else 'plain TPE'}: "
            f"{len(trials)} trials in {wall:.0f} s, exact "
            f"{duplicate_share(trials, search_space):.1%}, near "
            f"{duplicate_share(trials, search_space, NEAR_TOLERANCE):.1%}, integer/categorical "
            f"{duplicate_share(trials, search_space, DISCRETE_ONLY):.1%}"
        )
    print(
        f"\n{DUPLICATE_FAMILY}, 2 workers, {repeats} x {n_trials} trials per sampler "
        f"(shares per round, then pooled):\n"
        f"| sampler | exact duplicates | near duplicates (floats within "
        f"{NEAR_TOLERANCE:.0%} of range) | same integer and categorical parameters |\n"
        "|---|---|---|---|"
    )
    for liar in (False, True):
        rounds_found = found[liar]
        total = sum(len(trials) for trials in rounds_found)
        cells = []
        for tolerance in (0.0, NEAR_TOLERANCE, DISCRETE_ONLY):
            shares = [duplicate_share(trials, search_space, tolerance) for trials in rounds_found]
            pooled = sum(sh * len(t) for sh, t in zip(shares, rounds_found, strict=True)) / total
            cells.append(f"{', '.join(f'{sh:.1%}' for sh in shares)} → **{pooled:.1%}**")
        name = "constant liar (TPESampler(constant_liar=True))" if liar else "plain TPE"
        print(f"| {name} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=16, help="even; split over 2 workers")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs; best kept")
    parser.add_argument("--duplicate-trials", type=int, default=40, help="even; 0 skips")
    parser.add_argument("--dup-repeats", type=int, default=2)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    if args.n_trials < 2 or args.n_trials % 2:
        sys.exit("--n-trials must be an even number >= 2")
    if not (REPO_ROOT / "data/features/train.csv").is_file():
        sys.exit("data/features/train.csv is missing: run `dvc repro featurize` first")
    state = Path(tempfile.mkdtemp(prefix="stroke-tuning-bench-"))
    password = secrets.token_urlsafe(16)
    cluster = PostgresCluster(state / "postgres", free_port())
    runs = [
        (repeat, n_workers)
        for repeat in range(0 if args.skip_throughput else args.repeats)
        for n_workers in (1, 2)
    ]
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
        if best:
            ratio, wall_ratio = (best[2][i] / best[1][i] for i in (0, 1))
            verdict = "meets" if ratio >= TARGET_RATIO else "misses"
            print(
                f"best of {args.repeats}: 1 worker {best[1][0]:.2f}, 2 workers "
                f"{best[2][0]:.2f} trials/s; 2 vs 1 workers: {ratio:.2f}x in the study "
                f"({verdict} the {TARGET_RATIO}x target), {wall_ratio:.2f}x wall-clock; "
                f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other "
                "processes take cores from the workers)"
            )
        if args.duplicate_trials:
            measure_duplicates(cluster, password, state, args.duplicate_trials, args.dup_repeats)
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
