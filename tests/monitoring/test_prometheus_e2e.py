"""Real Prometheus scraping a real gunicorn-served exporter fed by the traffic simulator.

Checks, end to end: two gunicorn workers report one shared drift window; Prometheus
scrapes the contract metrics; an injected age shift shows up as PSI and puts
StrokeFeatureDrift into pending; every rule evaluates cleanly; every dashboard query is
valid PromQL and the essential ones return data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from monitoring.build_dashboards import DASHBOARD_DIR
from monitoring.prometheus_config import render_prometheus_config

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
SIMULATED_REQUESTS = 250
# Queries allowed to be empty: this traffic has no 5xx and no invalid records.
MAY_BE_EMPTY = ('status=~"5..', 'status=~"4..', "stroke_validation_failures_total")


class PrometheusAPI:
    def __init__(self, base: str) -> None:
        self.base = base

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base}/api/v1/query", params={"query": expr}, timeout=5)
        body = response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def get(self, path: str) -> Any:
        return requests.get(f"{self.base}{path}", timeout=5).json()["data"]


def scraped_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (labels or {}).items() <= sample.labels.items():
                return float(sample.value)
    return None


@pytest.mark.e2e
def test_prometheus_sees_shared_drift_window_and_evaluates_rules(
    tmp_path: Path,
    reference_profile: dict[str, Any],
    brain_csv: Path,
    prometheus_binaries: dict[str, str],
    processes: Any,
    get_free_port: Callable[[], int],
    poll: Callable[..., bool],
) -> None:
    # --- the exporter under gunicorn, two workers sharing one prediction log ------------
    profile_path = tmp_path / "reference_profile.json"
    profile_path.write_text(json.dumps(reference_profile))
    multiproc_dir = tmp_path / "multiproc"
    multiproc_dir.mkdir()
    app_port = get_free_port()
    app_url = f"http://127.0.0.1:{app_port}"
    environment = {
        **os.environ,
        "EXPORTER_STORE": str(tmp_path / "predictions.sqlite"),
        "EXPORTER_PROFILE": str(profile_path),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        "STROKE_MONITOR_MIN_DRIFT_RECORDS": "50",
        "STROKE_MONITOR_MIN_LABELS": "20",
        "STROKE_MONITOR_CACHE_SECONDS": "0.2",
    }
    gunicorn_log = tmp_path / "gunicorn.log"
    processes.start(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{app_port}",
            "--chdir",
            str(HERE),
            "--pythonpath",
            str(REPO_ROOT),
            "exporter_app:create_app()",
        ],
        log_path=gunicorn_log,
        env=environment,
    )
    healthy = poll(lambda: requests.get(f"{app_url}/health", timeout=1).ok, timeout=60)
    assert healthy, gunicorn_log.read_text()

    # --- Prometheus with the repository's config and rules, fast intervals --------------
    config = render_prometheus_config(
        f"127.0.0.1:{app_port}", scrape_interval="1s", evaluation_interval="1s"
    )
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    prometheus_port = get_free_port()
    prometheus_log = tmp_path / "prometheus.log"
    processes.start(
        [
            prometheus_binaries["prometheus"],
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
        log_path=prometheus_log,
    )
    prometheus = PrometheusAPI(f"http://127.0.0.1:{prometheus_port}")
    ready = poll(lambda: requests.get(f"{prometheus.base}/-/ready", timeout=1).ok, timeout=30)
    assert ready, prometheus_log.read_text()
    # Readiness precedes target discovery: wait for two scrapes of the idle exporter, so
    # the traffic below is seen as an increase (rate) rather than as a series' first value.
    scraped_twice = poll(
        lambda: (prometheus.value("min(count_over_time(stroke_predictions_total[1m]))") or 0) >= 2,
        timeout=30,
    )
    assert scraped_twice, prometheus_log.read_text()

    # --- drifted traffic with feedback, through the simulator's command line ------------
    simulation = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitoring.simulate",
            "--url",
            app_url,
            "--requests",
            str(SIMULATED_REQUESTS),
            "--drift",
            "age+25",
            "--feedback-rate",
            "0.5",
            "--seed",
            "0",
            "--rate",
            "100",  # spread over a few scrapes, so rates are visible
            "--data",
            str(brain_csv),
            "--json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert simulation.returncode == 0, simulation.stdout + simulation.stderr
    summary = json.loads(simulation.stdout)
    assert summary["predict_status"] == {"200": SIMULATED_REQUESTS}
    assert summary["records_scored"] == summary["records_sent"] > SIMULATED_REQUESTS
    assert summary["feedback_sent"] > 20
    assert summary["feedback_status"] == {"201": summary["feedback_sent"]}
    records = summary["records_scored"]

    # --- every worker reports the same window -------------------------------------------
    answers = set()
    for _ in range(12):
        scrape = requests.get(f"{app_url}/metrics", timeout=5)
        answers.add(
            (
                scraped_value(scrape.text, "stroke_drift_window_records"),
                scraped_value(scrape.text, "stroke_feature_psi", {"feature": "age"}),
                scraped_value(scrape.text, "stroke_live_labels"),
            )
        )
    assert len(answers) == 1, answers
    ((window, age_psi, labels),) = answers
    assert window == records and labels == summary["feedback_sent"]
    assert age_psi is not None and age_psi > 0.2

    # --- Prometheus has scraped the final state -----------------------------------------
    assert poll(
        lambda: prometheus.value("max(stroke_drift_window_records)") == records, timeout=30
    ), prometheus_log.read_text()
    assert prometheus.value('up{job="stroke-risk"}') == 1
    assert prometheus.value('stroke_feature_psi{feature="age"}') > 0.2
    assert prometheus.value('stroke_feature_psi{feature="gender"}') < 0.1
    assert prometheus.value('stroke_feature_drift_pvalue{feature="age", test="ks"}') < 1e-6
    assert len(prometheus.query("stroke_feature_missing_rate")) == 10
    assert len(prometheus.query("stroke_feature_unseen_category_rate")) == 7
    assert prometheus.value("stroke_live_labels") == summary["feedback_sent"]
    assert 0.0 <= prometheus.value("stroke_live_roc_auc") <= 1.0
    assert poll(
        lambda: (
            prometheus.value('sum(stroke_feedback_total{outcome="accepted"})')
            == summary["feedback_sent"]
        ),
        timeout=10,
    )
    assert prometheus.value('sum(stroke_http_requests_total{endpoint="/predict"})') == (
        SIMULATED_REQUESTS
    )

    # --- rules evaluate cleanly; drift on age is pending (for: 30m) ---------------------
    def rules_evaluated() -> bool:
        groups = prometheus.get("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return bool(rules) and all(
            rule["health"] == "ok" and not rule["lastEvaluation"].startswith("0001")
            for rule in rules
        )

    assert poll(rules_evaluated, timeout=20), prometheus.get("/api/v1/rules")

    def active_alerts() -> set[tuple[str, str | None, str]]:
        return {
            (a["labels"]["alertname"], a["labels"].get("feature"), a["state"])
            for a in prometheus.get("/api/v1/alerts")["alerts"]
        }

    def only_age_drift_pending() -> bool:
        # Each rule group evaluates on its own schedule: poll until all have seen the traffic.
        active = active_alerts()
        return ("StrokeFeatureDrift", "age", "pending") in active and not any(
            name in {"StrokeServiceDown", "StrokeNoTraffic"}
            or (name == "StrokeFeatureDrift" and feature != "age")
            for name, feature, _ in active
        )

    assert poll(only_age_drift_pending, timeout=20), active_alerts()

    # --- every dashboard query is valid PromQL against this data -------------------------
    empty = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "30s").replace("$feature", ".*")
                if not prometheus.query(expr) and not any(m in expr for m in MAY_BE_EMPTY):
                    empty.append(f"{path.name} / {panel['title']}: {expr}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
