"""Two tuning workers share one Optuna study on PostgreSQL; the tune stage collects it.

The workers are the documented command (`python -m stroke_risk.commands.tuning_worker`), started
at the same time as on two machines, with the password only in a libpq password file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.team.conftest import TrackingStack, copy_repo, run, set_params

pytestmark = pytest.mark.e2e
TRIALS_PER_WORKER = 2


def load_study(stack: TrackingStack, name: str, monkeypatch: pytest.MonkeyPatch):
    import optuna

    monkeypatch.setenv("PGPASSFILE", str(stack.pgpass))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    return optuna.load_study(study_name=name, storage=stack.database_url("optuna"))


def test_two_workers_share_one_study_and_tune_records_the_trials_it_used(
    tracking_stack: TrackingStack,
    two_commit_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import optuna

    repo = copy_repo(two_commit_repo, tmp_path / "repo")
    storage = tracking_stack.database_url("optuna")
    n_trials = 2 * TRIALS_PER_WORKER
    set_params(repo, {("tune", "storage"): storage, ("tune", "n_trials"): n_trials})
    env = tracking_stack.client_env()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stroke_risk.commands.tuning_worker",
                "--n-trials",
                str(TRIALS_PER_WORKER),
                "--worker-index",
                str(index),
            ],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    try:
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
    names = {re.search(r"study (\S+) in", stdout).group(1) for stdout, _ in outputs}
    assert len(names) == 1, outputs
    (name,) = names

    study = load_study(tracking_stack, name, monkeypatch)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.number for t in complete) == list(range(n_trials))
    # The workers ran at once: some trial of one overlaps in time with a trial of the other.
    overlapping = [
        (a.number, b.number)
        for a in complete
        for b in complete
        if a.number < b.number
        and a.datetime_start < b.datetime_complete
        and b.datetime_start < a.datetime_complete
    ]
    assert overlapping, "the two workers' trials never overlapped: they did not share the study"
    assert len({tuple(sorted(t.params.items())) for t in complete}) == n_trials

    run(["dvc", "repro", "tune"], repo, env=env, timeout=600)
    tuning = json.loads((repo / "reports/tuning.json").read_text())
    assert tuning["study_name"] == name
    assert tuning["study"]["storage"] == storage
    assert tuning["study"]["trials_used"] == list(range(n_trials))
    best = max(complete, key=lambda t: (t.value, -t.number))
    assert tuning["study"]["best_trial"] == best.number
    assert {k: v for k, v in tuning["best_params"].items() if k in best.params} == best.params
    # The stage found enough trials and added none.
    assert len(load_study(tracking_stack, name, monkeypatch).trials) == n_trials
