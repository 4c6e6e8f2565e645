"""The outcome-label loop once, end to end: serve, labels, collect, validate, update, gates.

    .venv/bin/python -m monitoring.labels_demo [--patients 6000] [--prevalence-factor 2]

1. starts the service as ``make serve`` does (gunicorn, the model in models/), its prediction
   log in a temporary directory;
2. scores --patients patients drawn from the held-out test split (POST /predict, batches);
3. sends each one's outcome (POST /feedback), drawn from a planted truth: the model's
   log-odds shifted so the mean risk is --prevalence-factor times the model's (a
   population whose stroke rate doubled);
4. stops the service and collects the labelled predictions (stroke_risk.updating.collect,
   into the temporary directory: the demo does not touch data/outcomes or DVC);
5. runs the validate_outcomes and update stages on them (outputs in the temporary
   directory) and prints both reports;
6. checks the release gates on the update's held-out labels, as `make release VERSION=x.y.z
   MODEL=updated` does (conf/release/gates.yaml; the base model in models/ as @production),
   and prints one line per gate. Nothing is released: no git, DVC remote or MLflow here.

Everything it started is stopped and the directory removed at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests
from scipy.special import expit

from monitoring.demo import (
    LOOPBACK,
    REPO_ROOT,
    Processes,
    demo_credentials,
    free_port,
    service_environment,
    wait_until_ready,
)
from stroke_risk import paths
from stroke_risk.data.prepared import read_prepared
from stroke_risk.data.schema import TARGET
from stroke_risk.evaluation.calibration import LOGIT_CLIP
from stroke_risk.log_odds import logit
from stroke_risk.updating.collect import collect
from stroke_risk.updating.simulation import intercept_for_mean_risk

BATCH = 500
FEEDBACK_THREADS = 4
START_TIMEOUT_SECONDS = 120.0


def score(session: requests.Session, url: str, records: list[dict]) -> tuple[list[str], np.ndarray]:
    """Prediction ids and probabilities of records, scored by the running service."""
    ids: list[str] = []
    probabilities: list[float] = []
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        response = session.post(
            f"{url}/predict?explain=false", json={"instances": batch}, timeout=60
        )
        response.raise_for_status()
        for prediction in response.json()["predictions"]:
            ids.append(prediction["prediction_id"])
            probabilities.append(prediction["stroke_probability"])
    return ids, np.asarray(probabilities)


def send_outcomes(session: requests.Session, url: str, ids: list[str], labels: np.ndarray) -> None:
    """POST /feedback for every prediction, FEEDBACK_THREADS at a time (as several wards would)."""

    def send(pair: tuple[str, int]) -> None:
        response = session.post(
            f"{url}/feedback", json={"prediction_id": pair[0], "stroke": pair[1]}, timeout=30
        )
        response.raise_for_status()

    with ThreadPoolExecutor(FEEDBACK_THREADS) as pool:
        list(pool.map(send, zip(ids, (int(label) for label in labels), strict=True)))


def run_stage(name: str, directory: Path) -> None:
    arguments = ["--outcomes", str(directory / "outcomes"), "--out", str(directory / "reports")]
    if name == "validate_outcomes":
        arguments += ["--curve", str(directory / "reports/outcome_calibration.csv")]
    else:
        arguments += ["--updated", str(directory / "updated")]
    subprocess.run([sys.executable, "-m", f"stages.{name}", *arguments], cwd=REPO_ROOT, check=True)


def run_loop(
    directory: Path, *, patients: int, prevalence_factor: float, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The loop in directory; returns (validation.json, update.json). Stops the service."""
    processes = Processes(directory)
    rng = np.random.default_rng(seed)
    try:
        test = read_prepared(str(REPO_ROOT / paths.PREPARED_TEST)).drop(columns=[TARGET])
        rows = test.sample(n=patients, replace=True, random_state=seed)
        records = [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in rows.to_dict(orient="records")
        ]
        port = free_port()
        url = f"http://{LOOPBACK}:{port}"
        credentials, token, _ = demo_credentials(directory)
        environment = service_environment(directory, port, credentials)
        environment["STROKE_FEEDBACK_RATE_LIMIT"] = "100000/minute"
        print(f"1. serve: starting the service (files in {directory}) ...", flush=True)
        processes.start(
            "service",
            [sys.executable, "-m", "gunicorn", "-c", "app/gunicorn_conf.py", "app:create_app()"],
            cwd=REPO_ROOT,
            env=environment,
        )
        wait_until_ready(
            f"{url}/ready", processes, "service", threading.Event(), START_TIMEOUT_SECONDS
        )
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        ids, probability = score(session, url, records)
        print(f"   scored {len(ids)} patients; mean predicted risk {probability.mean():.4f}")
        shift = intercept_for_mean_risk(
            logit(probability, floor=LOGIT_CLIP), prevalence_factor * probability.mean()
        )
        labels = (
            rng.random(len(ids)) < expit(logit(probability, floor=LOGIT_CLIP) + shift)
        ).astype(int)
        print(
            f"2. labels: {labels.sum()} strokes among {len(labels)} outcomes (planted: log-odds "
            f"+{shift:.2f}, mean risk x{prevalence_factor:g}); POST /feedback for each ...",
            flush=True,
        )
        started = time.monotonic()
        send_outcomes(session, url, ids, labels)
        print(f"   sent in {time.monotonic() - started:.0f} s")
    finally:
        processes.stop_all()
    document = collect(
        directory / "predictions.sqlite",
        directory / "outcomes",
        retention_days=730,
        now=time.time(),
    )
    print(
        f"3. collect: {document['labels']} labelled predictions, {document['events']} events,"
        f" versions {sorted(document['model_versions'])}"
    )
    print("4. validate (stage validate_outcomes):", flush=True)
    run_stage("validate_outcomes", directory)
    print("5. update (stage update):", flush=True)
    run_stage("update", directory)
    reports = directory / "reports"
    return (
        json.loads((reports / "validation.json").read_text()),
        json.loads((reports / "update.json").read_text()),
    )


def release_check(directory: Path) -> list[Any]:
    """The release gates of `make release MODEL=updated` on the update run_loop wrote in
    directory: the gate code reads a project layout, so a view of one links the demo's
    outputs and outcome labels (the release reruns the held-out rows from them) and the
    repository's gate file, params and base model metadata the update stage read. Returns
    every GateResult (none raises)."""
    from stroke_risk.release.gates import GATES_FILE
    from stroke_risk.release.publish import check_update_gates, read_update

    view = directory / "release-view"
    for link, target in (
        (view / GATES_FILE, REPO_ROOT / GATES_FILE),
        (view / paths.PARAMS, REPO_ROOT / paths.PARAMS),
        (view / paths.MODEL_METADATA, REPO_ROOT / paths.MODEL_METADATA),
        (view / paths.OUTCOMES_DIR, directory / "outcomes"),
        (view / paths.OUTCOME_REPORTS_DIR, directory / "reports"),
        (view / paths.UPDATED_DIR, directory / "updated"),
    ):
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(target)
    # An override reason returns failed gates instead of raising: the demo reports them all.
    return check_update_gates(
        view,
        read_update(view),
        production_version=None,
        releases=[],
        override="labels demo: gates reported, nothing released",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=6000)
    parser.add_argument("--prevalence-factor", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="stroke-labels-demo-"))
    try:
        run_loop(
            directory,
            patients=args.patients,
            prevalence_factor=args.prevalence_factor,
            seed=args.seed,
        )
        for name in ("validation.md", "update.md"):
            print(f"\n----- {name} -----\n{(directory / 'reports' / name).read_text()}")
        print("model to serve:", sorted(p.name for p in (directory / "updated").iterdir()))
        print("6. release check (the gates of make release VERSION=x.y.z MODEL=updated):")
        results = release_check(directory)
        for result in results:
            print(f"   {'pass' if result.passed else 'FAIL'}  {result.line}")
        return 0 if all(result.passed for result in results) else 1
    finally:
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
