"""Two replicas read like one service: real gunicorn x 2, one real Prometheus (issue #9).

What docker compose runs as N replicas behind nginx, run here as two instances of the
service on two loopback ports (what `make serve` runs, twice), sharing one prediction log
as the compose replicas share one volume. One Prometheus scrapes both (static targets:
DNS service discovery needs Docker's DNS) with the repository's rules, and:

- a prediction scored by one replica takes feedback through the other (the reason the
  log is shared: behind a load balancer, feedback reaches any replica);
- the counters summed over both equal the traffic sent to both;
- every dashboard query returns data and, evaluated at one instant against the same
  query restricted to each replica: a sum over counters equals the replicas' values
  added up (a panel shows the combined traffic; no counter is maxed); a query of a gauge
  that is the same on every replica (the drift and live-performance windows of the
  shared log, the model's threshold) equals each replica's value, not a multiple of it;
  the drift classifier's AUC is the larger replica's;
- every alert expression evaluates; the drift alerts fire once, not once per replica.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from monitoring.prometheus_config import render_prometheus_config
from stroke_risk.data.schema import EXAMPLE_RECORD
from tests.app.conftest import SERVER_COMMAND
from tests.monitoring.test_prometheus_e2e import (
    REPO_ROOT,
    alert_exprs,
    dashboard_queries,
    server_environment,
    simulate,
)

REQUESTS = {"a": 70, "b": 110}
DRIFT = ("age+25", "gender=Other@0.3")
# Gauges that are the same on every replica: computed from the shared prediction log, or
# describing the one model. A panel must show their value, not a multiple of it. (The
# multivariate classifier is fitted by each worker on its own schedule: it may differ.)
SAME_ON_EVERY_REPLICA = re.compile(
    r"\bstroke_(feature_|drift_|live_|estimated_|model_|reference_positive_rate)"
)
# Counters and histograms: each replica counts its own traffic; a panel must add them up.
COUNTERS = re.compile(
    r"\b(stroke_(http_requests_total|http_request_duration_seconds_bucket|predictions_total"
    r"|predicted_probability_bucket|validation_failures_total|feedback_total)|up)\b"
)
SELECTOR = re.compile(r"\b(stroke_[a-z_]+|up)(\{([^}]*)\})?(?![\w:(])")


def restrict(expr: str, instance: str) -> str:
    """expr with every stroke_* and up selector limited to one scrape target."""

    def add_matcher(match: re.Match[str]) -> str:
        inner = match[3] or ""
        joined = f"{inner}," if inner.strip() else ""
        return f'{match[1]}{{{joined}instance="{instance}"}}'

    return SELECTOR.sub(add_matcher, expr)


def test_restrict_adds_the_instance_to_every_selector() -> None:
    expr = (
        'sum(rate(stroke_http_requests_total{status=~"5.."}[1m])) / '
        "sum(rate(stroke_http_requests_total[1m])) and max(up) "
        "and stroke:predicted_positive_rate:ratio_rate30m"
    )
    assert restrict(expr, "h:1") == (
        'sum(rate(stroke_http_requests_total{status=~"5..",instance="h:1"}[1m])) / '
        'sum(rate(stroke_http_requests_total{instance="h:1"}[1m])) and max(up{instance="h:1"}) '
        "and stroke:predicted_positive_rate:ratio_rate30m"
    )


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def query(self, expr: str, at: float | None = None) -> dict[tuple[tuple[str, str], ...], float]:
        """{sorted label pairs: value} of an instant query (at a fixed time if given)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = requests.get(f"{self.base}/api/v1/query", params=params, timeout=5).json()
        assert body["status"] == "success", f"{expr}: {body}"
        return {
            tuple(sorted(series["metric"].items())): float(series["value"][1])
            for series in body["data"]["result"]
        }

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return next(iter(result.values())) if result else None


def start_replica(name: str, tmp_path: Path, port: int, shared_log: Path, processes: Any) -> str:
    directory = tmp_path / name
    directory.mkdir()
    environment = server_environment(directory, port)
    environment["STROKE_MONITOR_DB"] = str(shared_log)
    processes.start(
        SERVER_COMMAND, log_path=directory / "gunicorn.log", cwd=REPO_ROOT, env=environment
    )
    return f"127.0.0.1:{port}"


@pytest.mark.scenario
@pytest.mark.e2e
def test_two_replicas_read_like_one_service(
    tmp_path: Path,
    brain_csv: Path,
    prometheus_binaries: dict[str, str],
    processes: Any,
    get_free_port: Callable[[], int],
    poll: Callable[..., bool],
) -> None:
    # --- two instances of the service, one shared prediction log ------------------------
    shared_log = tmp_path / "predictions.sqlite"
    replicas = {
        name: start_replica(name, tmp_path, get_free_port(), shared_log, processes)
        for name in REQUESTS
    }
    for name, address in replicas.items():
        ready = poll(lambda a=address: requests.get(f"http://{a}/ready", timeout=1).ok, timeout=60)
        assert ready, (tmp_path / name / "gunicorn.log").read_text()

    # --- one Prometheus scraping both, the repository's rules ---------------------------
    config = render_prometheus_config(
        list(replicas.values()), scrape_interval="1s", evaluation_interval="1s"
    )
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus_port = get_free_port()
    processes.start(
        [
            prometheus_binaries["prometheus"],
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
        log_path=tmp_path / "prometheus.log",
    )
    prometheus = Prometheus(f"http://127.0.0.1:{prometheus_port}")
    assert poll(lambda: requests.get(f"{prometheus.base}/-/ready", timeout=1).ok, timeout=30)
    # Two scrapes of each idle replica, so the traffic below shows as an increase.
    assert poll(
        lambda: (
            prometheus.value('count(up{job="stroke-risk"} == 1)') == 2
            and (prometheus.value("min(count_over_time(stroke_predictions_total[1m]))") or 0) >= 2
        ),
        timeout=30,
    ), (tmp_path / "prometheus.log").read_text()
    assert prometheus.value('count(up{job="stroke-risk"})') == 2

    # --- feedback through the other replica: the shared log makes it work ---------------
    a, b = (f"http://{address}" for address in replicas.values())
    record = dict(EXAMPLE_RECORD)
    scored = requests.post(f"{a}/predict", json=record, timeout=5).json()
    answer = requests.post(
        f"{b}/feedback", json={"prediction_id": scored["prediction_id"], "stroke": 1}, timeout=5
    )
    assert answer.status_code == 201, answer.text

    # --- traffic to each replica; an invalid request to each ----------------------------
    sent = {
        "a": simulate(a, brain_csv, REQUESTS["a"], "--seed", "1"),
        "b": simulate(
            b,
            brain_csv,
            REQUESTS["b"],
            "--seed",
            "2",
            *[argument for spec in DRIFT for argument in ("--drift", spec)],
        ),
    }
    for url in (a, b):
        assert requests.post(f"{url}/predict", json={"age": 230}, timeout=5).status_code == 400
    predict_requests = sum(REQUESTS.values()) + 1 + 2
    records = sum(s["records_scored"] for s in sent.values()) + 1
    labels = sum(s["feedback_sent"] for s in sent.values()) + 1
    # Each simulator run reports the service's window: both replicas' records at the end.
    assert sent["b"]["service"]["drift"]["window_records"] == records

    # --- Prometheus has the final state of both -----------------------------------------
    def settled() -> bool:
        totals = prometheus.query("sum by (instance) (stroke_drift_window_records)")
        return (
            prometheus.value('sum(stroke_http_requests_total{endpoint="/predict"})')
            == predict_requests
            and len(totals) == 2
            and set(totals.values()) == {records}
            # Two samples of each validation-failure series, so rate() over it has a value.
            and (
                prometheus.value("min(count_over_time(stroke_validation_failures_total[1m]))") or 0
            )
            >= 2
        )

    assert poll(settled, timeout=30), (tmp_path / "prometheus.log").read_text()
    # The sums of the counters are the traffic sent to both replicas.
    assert prometheus.value("sum(stroke_predictions_total)") == records
    assert prometheus.value('sum(stroke_feedback_total{outcome="accepted"})') == labels
    per_replica = prometheus.query(
        'sum by (instance) (stroke_http_requests_total{endpoint="/predict"})'
    )
    assert sorted(per_replica.values()) == sorted([REQUESTS["a"] + 1 + 1, REQUESTS["b"] + 1])
    # Both replicas report the whole service's drift and label windows.
    assert set(prometheus.query("stroke_live_labels").values()) == {labels}
    assert prometheus.value("max(stroke_live_labels)") == labels

    # --- every dashboard query: data, and sums/maxima over the replicas -----------------
    at = time.time()
    instances = list(replicas.values())
    problems = []
    for where, expr in dashboard_queries():
        combined = prometheus.query(expr, at)
        if not combined:
            problems.append(f"no data: {where}: {expr}")
            continue
        if not SELECTOR.search(expr):
            continue  # a recording rule: aggregated in alert_rules.yml
        parts = [prometheus.query(restrict(expr, instance), at) for instance in instances]
        head = expr.lstrip()
        if COUNTERS.search(expr):
            if head.startswith(("max", "min", "avg")):
                problems.append(f"a counter not summed over the replicas: {where}: {expr}")
            elif head.startswith(("sum", "count(up")):
                for key, value in combined.items():
                    expected = sum(part.get(key, 0.0) for part in parts)
                    if abs(value - expected) > 1e-9 * max(1.0, abs(expected)):
                        problems.append(f"not the sum of the replicas: {where}: {expr}")
                if "stroke_http_requests_total" in expr and not any(parts[1].values()):
                    problems.append(f"replica b has no traffic in: {where}: {expr}")
            # Ratios and quantiles of sums: data is enough (their sums are checked above).
        elif SAME_ON_EVERY_REPLICA.search(expr):
            for key, value in combined.items():
                values = {part.get(key) for part in parts}
                if values != {value}:
                    problems.append(f"not each replica's value {values}: {where}: {expr}")
        else:
            for key, value in combined.items():
                if value != max(part[key] for part in parts if key in part):
                    problems.append(f"not the max of the replicas: {where}: {expr}")
    assert not problems, "\n".join(problems)

    # --- alerts: every expression evaluates; drift fires once for the service ------------
    for expr in alert_exprs().values():
        prometheus.query(expr)

    def drift_alerts() -> list[dict[str, Any]]:
        alerts = requests.get(f"{prometheus.base}/api/v1/alerts", timeout=5).json()
        return [
            a for a in alerts["data"]["alerts"] if a["labels"]["alertname"] == "StrokeFeatureDrift"
        ]

    assert poll(lambda: any(a["labels"]["feature"] == "age" for a in drift_alerts()), timeout=20)
    age = [a for a in drift_alerts() if a["labels"]["feature"] == "age"]
    assert len(age) == 1 and "instance" not in age[0]["labels"], age
