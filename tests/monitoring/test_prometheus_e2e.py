"""Real Prometheus scraping the real app, fed by the traffic simulator (issue #4).

The app is the one `make serve` runs: gunicorn with app/gunicorn_conf.py, 2 workers, the
repository's model (verified against dvc.lock), live monitoring with its prediction log
in tmp_path. Prometheus 2.x (Debian's binary) runs the repository's config and rules,
scraping every second, on a free loopback port. The test sends a few seconds of traffic:

- valid records, then drifted ones (age + 25 years; 30 % gender "Other", a category absent
  from training; 60 % missing bmi), with feedback on every scored record, all
  through ``python -m monitoring.simulate``, whose summary must name age and gender as
  the top drifted features, as the service reports them;
- a few invalid records and an invalid feedback, so the 4xx and validation-failure
  series exist.

Then it checks, against Prometheus's HTTP API:

- both workers report the same drift window (each scrape of /metrics is attributed to the
  worker that answered it through that worker's own counter file);
- every dashboard query returns data;
- every alert expression evaluates, and returns data or its parts do. An alert expression
  compares a series with a threshold, so it is empty while the alert is not firing. For
  the alerts this traffic makes fire (StrokeFeatureDrift, StrokeUnseenCategories,
  StrokeMissingRateHigh) the whole expression must return data and the alert must be
  pending (their ``for:`` is 30 minutes). For the others, ALERT_PROBES lists the
  sub-expressions that must return data: the left-hand side of each comparison and each
  operand of ``and``; a test checks that each probe is literally part of its rule, so the
  probes cannot drift from alert_rules.yml. The one series that is legitimately absent is
  the 5xx numerator of StrokeHighErrorRatio: the app answers no 5xx, so the probe is the
  ratio's denominator.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from monitoring.build_dashboards import DASHBOARD_DIR
from monitoring.demo import demo_credentials
from monitoring.prometheus_config import render_prometheus_config
from tests.app.conftest import SERVER_COMMAND, live_children

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
RULES = REPO_ROOT / "monitoring" / "prometheus" / "alert_rules.yml"
VALID_REQUESTS = 80
DRIFTED_REQUESTS = 220
DRIFT = ("age+25", "gender=Other@0.3", "bmi=null@0.6")
# Alerts the drifted traffic makes fire, with the label value each must fire for.
FIRING = {
    "StrokeFeatureDrift": ("feature", "age"),
    "StrokeUnseenCategories": ("feature", "gender"),
    "StrokeMissingRateHigh": ("feature", "bmi"),
}
# Sub-expressions of the other alerts that must return data (see the module docstring).
ALERT_PROBES: dict[str, list[str]] = {
    # The `absent(...)` branch is empty while any replica is discovered.
    "StrokeServiceDown": ['max(up{job="stroke-risk"})'],
    "StrokeReplicaDown": ['up{job="stroke-risk"}', 'max(up{job="stroke-risk"}) == 1'],
    "StrokeHighErrorRatio": ["sum(rate(stroke_http_requests_total[5m]))"],
    "StrokeHighLatencyP99": [
        "histogram_quantile(0.99, sum by (le) "
        '(rate(stroke_http_request_duration_seconds_bucket{endpoint="/predict"}[5m])))'
    ],
    "StrokeNoTraffic": [
        '(sum(rate(stroke_http_requests_total{endpoint="/predict"}[30m])) or vector(0))',
        'max(up{job="stroke-risk"})',
    ],
    "StrokePositiveRateShift": [
        "stroke:predicted_positive_rate:ratio_rate30m / on() max(stroke_reference_positive_rate)",
        "sum(increase(stroke_predictions_total[30m])) >= 100",
    ],
    "StrokeMultivariateDrift": [
        "max(stroke_multivariate_drift_auc)",
        "max(stroke_drift_window_records) >= 200",
    ],
    "StrokeLiveRocAucLow": [
        "max(stroke_live_roc_auc)",
        "max(stroke_live_positive_labels) >= 10",
        "max(stroke_live_negative_labels) >= 40",
    ],
    "StrokeLiveRecallLow": [
        "max(stroke_live_recall)",
        "max(stroke_live_positive_labels) >= 10",
        "max(stroke_live_negative_labels) >= 40",
    ],
    "StrokeEstimatedRocAucLow": [
        "max(stroke_estimated_roc_auc)",
        "max(stroke_drift_window_records) >= 200",
    ],
    "StrokeEstimatedRecallLow": [
        "max(stroke_estimated_recall)",
        "max(stroke_drift_window_records) >= 200",
    ],
    "StrokeFeatureCorrelationDrift": ["min by (pair) (stroke_feature_correlation_pvalue)"],
    "StrokeLiveCalibrationShift": ["min(stroke_live_calibration_pvalue)"],
}
# One invalid record per field named, each missing the other fields too.
INVALID_FIELDS = {"gender": "male", "age": 230, "bmi": 5}


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


def compact(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_exprs() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for rule in rules() if "alert" in rule}


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target, Grafana variables filled in."""
    queries = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "1m").replace("$feature", ".*")
                queries.append((f"{path.name} / {panel['title']}", expr))
    return queries


def test_alert_probes_cover_every_alert_and_are_part_of_their_rules() -> None:
    exprs = alert_exprs()
    assert set(exprs) == set(ALERT_PROBES) | set(FIRING)
    assert not set(ALERT_PROBES) & set(FIRING)
    for alert, probes in ALERT_PROBES.items():
        for probe in probes:
            assert compact(probe) in compact(exprs[alert]), (alert, probe)


def scraped_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (labels or {}).items() <= sample.labels.items():
                return float(sample.value)
    return None


def metrics_answered_by_worker(multiproc_dir: Path) -> dict[int, float]:
    """GET /metrics requests each process has answered, read from its own counter file."""
    answered: dict[int, float] = {}
    for path in multiproc_dir.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(key)
            if sample == "stroke_http_requests_total" and labels.get("endpoint") == "/metrics":
                answered[pid] = answered.get(pid, 0.0) + value
    return answered


def simulate(
    app_url: str, brain_csv: Path, requests_count: int, *extra: str, token: str = ""
) -> dict[str, Any]:
    """Run the traffic simulator's command line (its token in STROKE_API_TOKEN); return
    its JSON summary."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitoring.simulate",
            "--url",
            app_url,
            "--requests",
            str(requests_count),
            "--feedback-rate",
            "1",  # every record: enough labelled strokes (>= 10) for the live figures
            "--report-delay",
            "0.5",
            "--rate",
            "100",  # spread over a few scrapes, so rates are visible
            "--data",
            str(brain_csv),
            "--json",
            *extra,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "STROKE_API_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["predict_status"] == {"200": requests_count}, summary
    assert summary["feedback_status"] == {"201": summary["feedback_sent"]}, summary
    return summary


def server_environment(tmp_path: Path, port: int) -> dict[str, str]:
    """The real app's environment: inherited minus service settings, state in tmp_path."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STROKE_", "PROMETHEUS_MULTIPROC", "WEB_CONCURRENCY"))
    }
    (tmp_path / "multiproc").mkdir()
    environment.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WEB_CONCURRENCY": "2",
            "TMPDIR": str(tmp_path),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
            "STROKE_MONITOR_DB": str(tmp_path / "predictions.sqlite"),
            "STROKE_MONITOR_MIN_DRIFT_RECORDS": "50",
            "STROKE_MONITOR_MIN_LABELS": "20",
            "STROKE_MONITOR_CACHE_SECONDS": "0.2",
            "STROKE_ACCESS_LOG": "",
        }
    )
    return environment


@pytest.mark.scenario
@pytest.mark.e2e
def test_prometheus_sees_the_real_app_and_every_query_returns_data(
    tmp_path: Path,
    brain_csv: Path,
    prometheus_binaries: dict[str, str],
    processes: Any,
    get_free_port: Callable[[], int],
    poll: Callable[..., bool],
) -> None:
    # --- the real app under gunicorn: 2 workers sharing one prediction log -------------
    # Credentials as the demo makes them: one for the traffic, one for Prometheus's scrape.
    credentials, token, scrape_token = demo_credentials(tmp_path)
    auth = {"Authorization": f"Bearer {token}"}
    app_port = get_free_port()
    app_url = f"http://127.0.0.1:{app_port}"
    gunicorn_log = tmp_path / "gunicorn.log"
    gunicorn = processes.start(
        SERVER_COMMAND,
        log_path=gunicorn_log,
        cwd=REPO_ROOT,
        env={**server_environment(tmp_path, app_port), "STROKE_CREDENTIALS_FILE": str(credentials)},
    )
    ready = poll(lambda: requests.get(f"{app_url}/ready", timeout=1).ok, timeout=60)
    assert ready, gunicorn_log.read_text()
    assert requests.get(f"{app_url}/metrics", timeout=5).status_code == 401
    assert requests.get(f"{app_url}/version", headers=auth, timeout=5).json()["explanations"]

    # --- Prometheus with the repository's config and rules, fast intervals --------------
    config = render_prometheus_config(
        f"127.0.0.1:{app_port}",
        scrape_interval="1s",
        evaluation_interval="1s",
        credentials_file=scrape_token,
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
    # Wait for two scrapes of the idle app, so the traffic below is seen as an increase
    # (rate) rather than as a series' first value.
    scraped_twice = poll(
        lambda: (prometheus.value("min(count_over_time(stroke_predictions_total[1m]))") or 0) >= 2,
        timeout=30,
    )
    assert scraped_twice, prometheus_log.read_text()

    # --- traffic: valid, then drifted, with feedback; some invalid requests -------------
    valid = simulate(app_url, brain_csv, VALID_REQUESTS, "--seed", "1", token=token)
    drifted = simulate(
        app_url,
        brain_csv,
        DRIFTED_REQUESTS,
        "--seed",
        "2",
        *[argument for spec in DRIFT for argument in ("--drift", spec)],
        token=token,
    )
    for name, value in INVALID_FIELDS.items():
        rejected = requests.post(f"{app_url}/predict", json={name: value}, headers=auth, timeout=5)
        assert rejected.status_code == 400
    bad_feedback = requests.post(
        f"{app_url}/feedback",
        json={"prediction_id": "0" * 32, "stroke": 1},
        headers=auth,
        timeout=5,
    )
    assert bad_feedback.status_code == 404
    records = valid["records_scored"] + drifted["records_scored"]
    labels = valid["feedback_sent"] + drifted["feedback_sent"]
    # The simulator's summary says what drifted, from the service's own figures.
    # Gender "Other" (share 0 in training) and age + 25 are the two shifts PSI sees.
    top_two = {name for name, _ in drifted["service"]["drift"]["top_psi"][:2]}
    assert top_two == {"age", "gender"}
    assert set(drifted["service"]["drift"]["significant"]) >= {"age", "gender"}
    assert valid["service"]["drift"]["significant"] == []
    for figures in (valid["service"]["performance"], drifted["service"]["performance"]):
        assert all(0 <= value <= 1 for value in figures["estimated"].values())
    assert 100 < records < 1000  # the whole traffic fits the default drift window
    assert labels >= 50

    # --- both workers report the same window --------------------------------------------
    assert poll(lambda: len(live_children(gunicorn.pid)) == 2, timeout=20)
    workers = set(live_children(gunicorn.pid))
    answers: dict[int, list[tuple[float | None, ...]]] = {pid: [] for pid in workers}
    multiproc_dir = tmp_path / "multiproc"
    for _ in range(100):
        before = metrics_answered_by_worker(multiproc_dir)
        text = requests.get(f"{app_url}/metrics", headers=auth, timeout=5).text  # a new connection
        after = metrics_answered_by_worker(multiproc_dir)
        answered = [pid for pid in after if after[pid] != before.get(pid, 0.0)]
        if len(answered) != 1 or answered[0] not in answers:
            continue  # Prometheus scraped at the same moment: cannot tell who answered
        answers[answered[0]].append(
            (
                scraped_value(text, "stroke_drift_window_records"),
                scraped_value(text, "stroke_feature_psi", {"feature": "age"}),
                scraped_value(text, "stroke_feature_missing_rate", {"feature": "bmi"}),
                scraped_value(text, "stroke_live_labels"),
                scraped_value(text, "stroke_live_roc_auc"),
            )
        )
        if all(len(seen) >= 3 for seen in answers.values()):
            break
    assert all(len(seen) >= 3 for seen in answers.values()), answers
    ((window, age_psi, bmi_missing, live_labels, roc_auc),) = {
        answer for seen in answers.values() for answer in seen
    }
    assert window == records and live_labels == labels
    assert age_psi is not None and age_psi > 0.2
    assert bmi_missing is not None and bmi_missing > 0.3
    assert roc_auc is not None and 0.0 <= roc_auc <= 1.0

    # --- Prometheus has scraped the final state -----------------------------------------
    assert poll(
        lambda: prometheus.value("max(stroke_drift_window_records)") == records, timeout=30
    ), prometheus_log.read_text()
    assert prometheus.value('up{job="stroke-risk"}') == 1
    assert prometheus.value('stroke_feature_psi{feature="age"}') > 0.2
    assert prometheus.value('stroke_feature_psi{feature="Residence_type"}') < 0.1
    assert len(prometheus.query("stroke_feature_missing_rate")) == 10
    assert len(prometheus.query("stroke_feature_unseen_category_rate")) == 7
    assert prometheus.value("stroke_live_labels") == labels
    assert poll(
        lambda: prometheus.value('sum(stroke_feedback_total{outcome="accepted"})') == labels,
        timeout=10,
    )
    predict_requests = VALID_REQUESTS + DRIFTED_REQUESTS + len(INVALID_FIELDS)
    assert poll(
        lambda: (
            prometheus.value('sum(stroke_http_requests_total{endpoint="/predict"})')
            == predict_requests
        ),
        timeout=10,
    )
    # Two samples of every validation-failure series, so rate() over it has a value.
    assert poll(
        lambda: (
            (prometheus.value("min(count_over_time(stroke_validation_failures_total[1m]))") or 0)
            >= 2
        ),
        timeout=10,
    )

    # --- rules evaluate cleanly; the drift alerts are pending (for: 30m) ----------------
    def active_alerts() -> set[tuple[str, str | None, str]]:
        return {
            (a["labels"]["alertname"], a["labels"].get("feature"), a["state"])
            for a in prometheus.get("/api/v1/alerts")["alerts"]
        }

    expected = {(name, value, "pending") for name, (_, value) in FIRING.items()}

    def expected_alerts_pending() -> bool:
        # Each rule group evaluates on its own schedule: poll until all have seen the traffic.
        groups = prometheus.get("/api/v1/rules")["groups"]
        healthy = all(rule["health"] == "ok" for group in groups for rule in group["rules"])
        return healthy and expected <= active_alerts()

    assert poll(expected_alerts_pending, timeout=30), (
        active_alerts(),
        prometheus.get("/api/v1/rules"),
    )
    assert not {name for name, _, _ in active_alerts()} & {"StrokeServiceDown", "StrokeNoTraffic"}

    # --- every recording rule, alert expression and dashboard query returns data --------
    empty = []
    for rule in rules():
        if "record" in rule and not prometheus.query(rule["expr"]):
            empty.append(f"recording rule {rule['record']}: {rule['expr']}")
    for alert, expr in alert_exprs().items():
        result = prometheus.query(expr)  # every expression evaluates without error
        if alert in FIRING:
            label, value = FIRING[alert]
            if value not in {series["metric"].get(label) for series in result}:
                empty.append(f"alert {alert} does not fire for {label}={value}: {expr}")
            continue
        for probe in ALERT_PROBES[alert]:
            if not prometheus.query(probe):
                empty.append(f"alert {alert}, part {probe}")
    for where, expr in dashboard_queries():
        if not prometheus.query(expr):
            empty.append(f"dashboard {where}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
