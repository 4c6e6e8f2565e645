"""Prometheus configuration and alert rules, checked and unit-tested with promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.prometheus_config import render_prometheus_config

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
RULES = PROMETHEUS_DIR / "alert_rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "alert_rules_test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_CONFIG = PROMETHEUS_DIR.parent / "alertmanager" / "alertmanager.yml"
REQUIRED_ALERTS = {
    "StrokeServiceDown",
    "StrokeHighErrorRatio",
    "StrokeHighLatencyP99",
    "StrokeFeatureDrift",
    "StrokePositiveRateShift",
    "StrokeLiveRocAucLow",
    "StrokeLiveRecallLow",
    "StrokeNoTraffic",
    "StrokeReplicaDown",
    "StrokeMultivariateDrift",
    "StrokeEstimatedRocAucLow",
    "StrokeEstimatedRecallLow",
    "StrokeFeatureCorrelationDrift",
    "StrokeLiveCalibrationShift",
}


def run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd)


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_config(prometheus_binaries: dict[str, str], tmp_path: Path) -> None:
    # The committed config as deployed: with the scrape token file it names next to it.
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy, ignore=shutil.ignore_patterns("secrets"))
    token_file = (
        copy
        / yaml.safe_load(CONFIG.read_text())["scrape_configs"][0]["authorization"][
            "credentials_file"
        ]
    )
    token_file.parent.mkdir()
    token_file.write_text("srk_token")
    result = run([prometheus_binaries["promtool"], "check", "config", str(copy / CONFIG.name)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules(prometheus_binaries: dict[str, str]) -> None:
    result = run([prometheus_binaries["promtool"], "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(prometheus_binaries: dict[str, str]) -> None:
    result = run([prometheus_binaries["promtool"], "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("original", "mutated"),
    [
        ("(stroke_feature_drift_pvalue) < 0.0001", "(stroke_feature_drift_pvalue) < 0.01"),
        (
            "(stroke_feature_correlation_pvalue) < 0.0003",
            "(stroke_feature_correlation_pvalue) < 1e-9",
        ),
        (
            "min(stroke_live_calibration_pvalue) < 0.001",
            "min(stroke_live_calibration_pvalue) < 1e-6",
        ),
        ('max(up{job="stroke-risk"}) == 0', 'max(up{job="stroke-risk"}) == 2'),
        (") > 0.25", ") > 0.6"),
        ("max(stroke_live_positive_labels) >= 10", "max(stroke_live_positive_labels) >= 3"),
        ("max(stroke_drift_window_records) >= 200", "max(stroke_drift_window_records) >= 100"),
        ("max(stroke_estimated_recall) < 0.6", "max(stroke_estimated_recall) < 0.4"),
        ("max by (feature) (stroke_feature_missing_rate)", "stroke_feature_missing_rate"),
    ],
)
def test_rule_unit_tests_catch_a_changed_threshold(
    prometheus_binaries: dict[str, str], tmp_path: Path, original: str, mutated: str
) -> None:
    rules = RULES.read_text()
    assert original in rules
    (tmp_path / RULES.name).write_text(rules.replace(original, mutated))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run([prometheus_binaries["promtool"], "test", "rules", RULE_TESTS.name], cwd=tmp_path)
    assert result.returncode != 0


def test_required_alerts_exist_with_severity_and_summary() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    for rule in alert_rules():
        assert cases.get(rule["alert"]) == {True, False}, rule["alert"]


def test_error_ratio_and_latency_expressions_have_the_intended_shape() -> None:
    by_name = {rule["alert"]: " ".join(rule["expr"].split()) for rule in alert_rules()}
    assert (
        'sum(rate(stroke_http_requests_total{status=~"5.."}[5m])) / '
        "sum(rate(stroke_http_requests_total[5m]))"
    ) in by_name["StrokeHighErrorRatio"]
    assert (
        "histogram_quantile( 0.99, sum by (le) (rate(stroke_http_request_duration_seconds_bucket"
        in (by_name["StrokeHighLatencyP99"])
    )


def test_rendered_config_is_valid_and_points_at_the_target(
    prometheus_binaries: dict[str, str], tmp_path: Path
) -> None:
    config = render_prometheus_config("127.0.0.1:18000", scrape_interval="2s")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "stroke-risk")
    assert job["static_configs"] == [{"targets": ["127.0.0.1:18000"]}]
    assert "dns_sd_configs" not in job  # the committed file's discovery of compose replicas
    replicas = render_prometheus_config(["127.0.0.1:18000", "127.0.0.1:18001"])
    job = next(j for j in replicas["scrape_configs"] if j["job_name"] == "stroke-risk")
    assert job["static_configs"] == [{"targets": ["127.0.0.1:18000", "127.0.0.1:18001"]}]
    assert all(Path(f).is_absolute() and Path(f).is_file() for f in config["rule_files"])
    assert "alerting" not in config
    assert "authorization" not in job  # for an app running open on loopback
    token_file = tmp_path / "token"
    token_file.write_text("srk_token")
    config = render_prometheus_config("127.0.0.1:18000", credentials_file=token_file)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "stroke-risk")
    assert job["authorization"] == {"type": "Bearer", "credentials_file": str(token_file)}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run([prometheus_binaries["promtool"], "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_alertmanager_config_is_valid() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (apt-get install prometheus-alertmanager)")
    result = run([amtool, "check-config", str(ALERTMANAGER_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
