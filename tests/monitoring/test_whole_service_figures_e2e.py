"""Every worker of a real gunicorn exports the same drift and performance figures.

gunicorn with app/gunicorn_conf.py and 3 workers, the repository's model, the prediction
log in tmp_path. Traffic in two phases (same population, then older patients), feedback
on every record; between and after the phases /metrics is fetched many times, each on a
new connection, and each answer is attributed to the worker that gave it (that worker's
own counter file). Once the figures exist, every answer carries every drift and
performance figure, and answers given from the same stored computation (the same
``stroke_figures_age_seconds`` origin) are equal whichever worker gave them; after the
traffic stops, all answers are equal. Before issue 17 each worker fitted the drift
classifier on its own schedule: its AUC differed between answers or was missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.app.conftest import SERVER_COMMAND, live_children
from tests.monitoring.test_prometheus_e2e import (
    REPO_ROOT,
    metrics_answered_by_worker,
    server_environment,
    simulate,
)

# Figures every answer must carry once warmed up (labels reduced to one series each).
REQUIRED = (
    "stroke_drift_window_records",
    "stroke_feature_psi",
    "stroke_feature_drift_pvalue",
    "stroke_feature_correlation_pvalue",
    "stroke_live_labels",
    "stroke_live_roc_auc",
    "stroke_live_calibration_pvalue",
    "stroke_estimated_roc_auc",
    "stroke_multivariate_drift_auc",
)
SHARED_PREFIXES = ("stroke_drift", "stroke_feature_", "stroke_live_", "stroke_estimated_")


def service_figures(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The drift and performance samples of one /metrics answer."""
    figures = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(SHARED_PREFIXES) or sample.name == (
                "stroke_multivariate_drift_auc"
            ):
                figures[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return figures


def scrape_by_worker(app_url: str, multiproc_dir: Path, count: int) -> list[tuple[int, Any]]:
    """(worker pid, figures) of count answers whose worker is known."""
    answers = []
    for _ in range(count):
        before = metrics_answered_by_worker(multiproc_dir)
        text = requests.get(f"{app_url}/metrics", timeout=10).text
        after = metrics_answered_by_worker(multiproc_dir)
        answered = [pid for pid in after if after[pid] != before.get(pid, 0.0)]
        if len(answered) == 1:
            answers.append((answered[0], service_figures(text)))
        time.sleep(0.05)
    return answers


@pytest.mark.scenario
@pytest.mark.e2e
def test_every_worker_exports_the_same_figures(
    tmp_path: Path,
    brain_csv: Path,
    processes: Any,
    get_free_port: Callable[[], int],
    poll: Callable[..., bool],
) -> None:
    port = get_free_port()
    app_url = f"http://127.0.0.1:{port}"
    # Labels arrive here far faster than any clinic sends them: lift the per-credential limit
    # of POST /feedback (tested in tests/app/test_auth.py), which would answer 429.
    environment = server_environment(tmp_path, port) | {
        "WEB_CONCURRENCY": "3",
        "STROKE_FEEDBACK_RATE_LIMIT": "100000/minute",
    }
    log = tmp_path / "gunicorn.log"
    gunicorn = processes.start(SERVER_COMMAND, log_path=log, cwd=REPO_ROOT, env=environment)
    assert poll(lambda: requests.get(f"{app_url}/ready", timeout=1).ok, timeout=60), log.read_text()
    assert poll(lambda: len(live_children(gunicorn.pid)) == 3, timeout=20)
    multiproc_dir = tmp_path / "multiproc"

    calm = simulate(app_url, brain_csv, 250, "--seed", "1")
    # Warm up: the first answers carrying the classifier's AUC (a fit takes seconds).
    assert poll(
        lambda: (
            "stroke_multivariate_drift_auc " in requests.get(f"{app_url}/metrics", timeout=10).text
        ),
        timeout=60,
    ), log.read_text()
    first = scrape_by_worker(app_url, multiproc_dir, 30)
    older = simulate(app_url, brain_csv, 250, "--seed", "2", "--drift", "age+25")
    second = scrape_by_worker(app_url, multiproc_dir, 60)

    for pid, figures in first + second:
        names = {name for name, _ in figures}
        assert set(REQUIRED) <= names, (pid, set(REQUIRED) - names)
    # After the traffic, the log no longer changes: every answer is the same.
    settled = second[len(second) // 2 :]
    assert len({pid for pid, _ in settled}) >= 2, "fewer than two workers answered"
    reference = settled[0][1]
    for pid, figures in settled:
        assert figures == reference, pid
    # The drift of the second phase shows (not one worker's stale figures).
    assert reference[("stroke_feature_psi", (("feature", "age"),))] > 0.2
    records = calm["records_scored"] + older["records_scored"]
    assert reference[("stroke_drift_window_records", ())] == min(records, 1000)
