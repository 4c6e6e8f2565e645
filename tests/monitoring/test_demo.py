"""monitoring.demo: alert timing from Prometheus' rules API, and the real demo, bounded;
with --fire, rules and Alertmanager config generated from the committed ones and an alert
delivered to the demo's webhook receiver through a real Alertmanager."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from monitoring.alert_demo import (
    ALERT_RULES,
    ALERTMANAGER_CONFIG,
    AlertState,
    WebhookReceiver,
    alert_transitions,
    render_alertmanager_config,
    shorten_hold_times,
    write_yaml,
)
from monitoring.demo import active_alerts, format_alerts, parse_timestamp
from tests.processes import track

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "monitoring.demo"]

# The shape of Prometheus 2.42's /api/v1/rules data (durations in seconds).
RULES = {
    "groups": [
        {
            "name": "stroke-risk-model",
            "rules": [
                {
                    "type": "alerting",
                    "name": "StrokeFeatureDrift",
                    "duration": 1800,
                    "alerts": [
                        {
                            "labels": {
                                "alertname": "StrokeFeatureDrift",
                                "feature": "age",
                                "severity": "warning",
                                "component": "data",
                            },
                            "state": "pending",
                            "activeAt": "2026-11-30T16:51:41.123456789Z",
                            "value": "1.92e+00",
                        }
                    ],
                },
                {
                    "type": "alerting",
                    "name": "StrokeServiceDown",
                    "duration": 60,
                    "alerts": [
                        {
                            "labels": {"alertname": "StrokeServiceDown"},
                            "state": "firing",
                            "activeAt": "2026-11-30T16:40:00Z",
                            "value": "0",
                        }
                    ],
                },
                {"type": "recording", "name": "stroke:x", "query": "1"},
                {"type": "alerting", "name": "StrokeNoTraffic", "duration": 1800, "alerts": []},
            ],
        }
    ]
}


def test_pending_alerts_fire_at_active_at_plus_their_rules_for() -> None:
    alerts = active_alerts(RULES)
    assert [(a.name, a.state) for a in alerts] == [
        ("StrokeServiceDown", "firing"),
        ("StrokeFeatureDrift", "pending"),
    ]
    drift = alerts[1]
    assert drift.labels == {"feature": "age"}
    assert drift.active_at == datetime(2026, 11, 30, 16, 51, 41, 123456, tzinfo=UTC)
    assert drift.fires_at == drift.active_at + timedelta(minutes=30)
    now = datetime(2026, 11, 30, 16, 52, 41, tzinfo=UTC)
    text = format_alerts(alerts, now)
    assert "FIRING   StrokeServiceDown since 16:41:00 UTC" in text
    assert (
        "pending  StrokeFeatureDrift{feature=age}: active since 16:51:41; fires at 17:21:41 UTC"
        " (in 29m, its rule's `for: 30m`) if it persists"
    ) in text
    assert format_alerts([], now).startswith("alerts: none active yet")
    assert parse_timestamp("2026-11-30T16:40:00Z") == datetime(2026, 11, 30, 16, 40, tzinfo=UTC)


@pytest.mark.integration
def test_bad_options_and_a_missing_prometheus_are_one_line_each(tmp_path: Path) -> None:
    result = subprocess.run(
        [*DEMO, "--rate", "0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--rate must be between" in result.stderr
    result = subprocess.run(
        [*DEMO, "--drift", "height+3"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "unknown field" in result.stderr
    (tmp_path / "bin").mkdir()
    environment = {**os.environ, "PATH": str(tmp_path / "bin")}
    result = subprocess.run(
        [*DEMO, "--duration", "5"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "demo: prometheus is not installed: run `make system-deps` (Debian package)"
    ]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.scenario
@pytest.mark.e2e
def test_demo_reports_drift_and_pending_alerts_then_stops_everything_on_ctrl_c(
    prometheus_binaries: dict[str, str],
) -> None:
    assert (REPO_ROOT / "models" / "serving_model.npz").is_file(), "run dvc repro first"
    environment = {
        **os.environ,
        "PATH": f"{Path(prometheus_binaries['prometheus']).parent}:{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
    }
    demo = subprocess.Popen(
        # --duration bounds the run should Ctrl-C not be handled.
        [
            *DEMO,
            *("--duration", "90", "--report-every", "3", "--scrape-interval", "1"),
            *("--drift-after", "0"),
        ],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    track(demo)  # killed at session end should this test's own cleanup not run
    lines: list[str] = []
    pending = re.compile(
        r"pending  StrokeFeatureDrift\{feature=age\}: active since \d\d:\d\d:\d\d; "
        r"fires at \d\d:\d\d:\d\d UTC \(in 29m(\d\ds)?, its rule's `for: 30m`\)"
    )
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if pending.search(line):
                break
        interrupted = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's group
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    output = "\n".join(lines) + "\n" + rest
    assert demo.returncode == 0, output
    assert time.monotonic() - interrupted < 30, output
    assert any(pending.search(line) for line in lines), output
    urls = dict(re.findall(r"^  (service|Prometheus) +http://127\.0\.0\.1:(\d+)", output, re.M))
    assert set(urls) == {"service", "Prometheus"}, output
    assert re.search(r"^  age +PSI +\d+\.\d{3}  significant$", output, re.M), output
    assert "multivariate drift classifier AUC" in output
    assert output.rstrip().endswith("stopped.")
    # Everything it started is gone: ports closed, temporary directory removed.
    assert not any(port_open(int(port)) for port in urls.values())
    (directory,) = re.findall(r"files in (\S+)\)", output)
    assert not Path(directory).exists()


@pytest.mark.scenario
@pytest.mark.e2e
def test_demo_drifts_after_a_clean_phase_and_stops_after_its_duration(
    prometheus_binaries: dict[str, str],
) -> None:
    environment = {
        **os.environ,
        "PATH": f"{Path(prometheus_binaries['prometheus']).parent}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        [*DEMO, "--duration", "20", "--drift-after", "8", "--rate", "30", "--scrape-interval", "1"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "drift age+25 after 8 s" in output
    clean, drifted = output.split("--- from now on the traffic drifts: age+25 ---")
    # The report just before the drift starts: training-like traffic, no significant PSI.
    assert "--- after 8s ---" in clean
    # (On a busy machine the drift window may still be below its minimum at 8 s: then it says
    # so; either way nothing is significant yet.)
    assert re.search(
        r"^  \w+ +PSI +\d+\.\d{3}  (stable|moderate)$|^  no drift figures yet", clean, re.M
    ), output
    assert not re.search(r"PSI +\d+\.\d{3}  significant", clean), output
    assert "--- after 20s ---" in drifted
    assert re.search(r"^  age +PSI +\d+\.\d{3}  significant$", drifted, re.M), output
    # It stopped by itself after its duration (the timeout above only bounds a hang).
    assert output.rstrip().endswith("stopped.")


# --- --fire: an alert delivered -----------------------------------------------------------


@pytest.fixture(scope="session")
def alertmanager_binaries() -> dict[str, str]:
    """Paths of Debian's prometheus-alertmanager and amtool, installing the package if missing."""
    if shutil.which("prometheus-alertmanager") is None or shutil.which("amtool") is None:
        if shutil.which("apt-get") is None:
            pytest.skip("prometheus-alertmanager is missing and apt-get is unavailable")
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus-alertmanager"],
        ):
            subprocess.run(command, check=True, env=environment, capture_output=True, timeout=600)
    alertmanager, amtool = shutil.which("prometheus-alertmanager"), shutil.which("amtool")
    assert alertmanager and amtool, "the Debian package did not provide the binaries"
    return {"alertmanager": alertmanager, "amtool": amtool}


def test_demo_rules_are_the_committed_rules_with_a_short_for(
    tmp_path: Path, prometheus_binaries: dict[str, str]
) -> None:
    committed = yaml.safe_load(ALERT_RULES.read_text())
    shortened = shorten_hold_times(committed, "5s")
    committed_rules = [r for g in committed["groups"] for r in g["rules"]]
    shortened_rules = [r for g in shortened["groups"] for r in g["rules"]]
    assert len(shortened_rules) == len(committed_rules)
    for before, after in zip(committed_rules, shortened_rules, strict=True):
        if "alert" in before and "for" in before:
            assert after == {**before, "for": "5s"}
        else:
            assert after == before
    assert sum(1 for r in shortened_rules if r.get("for") == "5s") >= 10
    assert committed == yaml.safe_load(ALERT_RULES.read_text())  # the input is not changed
    path = write_yaml(tmp_path / "rules.yml", shortened, header="generated")
    check = subprocess.run(
        [prometheus_binaries["promtool"], "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_demo_alertmanager_config_is_the_committed_one_sending_to_the_webhook(
    tmp_path: Path, alertmanager_binaries: dict[str, str]
) -> None:
    committed = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    url = "http://127.0.0.1:9/alerts"
    rendered = render_alertmanager_config(committed, url)
    webhooks = [w for r in rendered["receivers"] for w in r.get("webhook_configs", [])]
    assert webhooks and {w["url"] for w in webhooks} == {url}
    assert rendered["route"]["group_wait"] == "1s"
    assert {k: v for k, v in rendered["route"].items() if k != "group_wait"} == {
        k: v for k, v in committed["route"].items() if k != "group_wait"
    }
    assert rendered["inhibit_rules"] == committed["inhibit_rules"]
    path = write_yaml(tmp_path / "alertmanager.yml", rendered, header="generated")
    check = subprocess.run(
        [alertmanager_binaries["amtool"], "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with pytest.raises(ValueError, match="no webhook_configs"):
        render_alertmanager_config({**committed, "receivers": [{"name": "x"}]}, url)


def test_the_webhook_receiver_prints_each_alert_of_a_notification() -> None:
    printed: list[str] = []
    receiver = WebhookReceiver("127.0.0.1", echo=printed.append).start()
    payload: dict[str, Any] = {
        "version": "4",
        "receiver": "stroke-risk-team",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "StrokeFeatureDrift",
                    "feature": "age",
                    "severity": "warning",
                    "service": "stroke-risk",
                },
                "annotations": {"summary": "Input drift on age (PSI > 0.2)"},
            },
            {"status": "resolved", "labels": {"alertname": "StrokeNoTraffic"}},
        ],
    }
    try:
        assert requests.post(receiver.url, json=payload, timeout=5).status_code == 200
        assert requests.post(receiver.url, data=b"{", timeout=5).status_code == 400
    finally:
        receiver.stop()
    assert receiver.received() == [payload]
    assert printed == [
        "DELIVERED  webhook 'stroke-risk-team' got FIRING StrokeFeatureDrift{feature=age}"
        " (severity warning): Input drift on age (PSI > 0.2)",
        "DELIVERED  webhook 'stroke-risk-team' got RESOLVED StrokeNoTraffic (severity -)",
    ]


def test_alert_transitions_print_changes_only() -> None:
    lines, states = alert_transitions({}, [AlertState("A{f=x}", "pending")], hold_for="5s")
    assert lines == ["PENDING    A{f=x}: its expression holds; fires if it holds for 5s"]
    same, states = alert_transitions(states, [AlertState("A{f=x}", "pending")], hold_for="5s")
    assert same == []
    lines, states = alert_transitions(states, [AlertState("A{f=x}", "firing")], hold_for="5s")
    assert lines == ["FIRING     A{f=x}: held for 5s; sent to Alertmanager"]
    lines, states = alert_transitions(states, [], hold_for="5s")
    assert lines == ["RESOLVED   A{f=x}"] and states == {}


def test_fire_without_alertmanager_is_one_line(
    tmp_path: Path, prometheus_binaries: dict[str, str]
) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "prometheus").symlink_to(prometheus_binaries["prometheus"])
    result = subprocess.run(
        [*DEMO, "--fire", "--duration", "5"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": str(tmp_path / "bin")},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "demo: prometheus-alertmanager is not installed: run `make system-deps` (Debian package)"
    ]
    result = subprocess.run(
        [*DEMO, "--fire", "--fire-for", "soon"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2 and "--fire-for must be a whole number" in result.stderr


@pytest.mark.scenario
@pytest.mark.e2e
def test_fire_mode_shows_a_drift_alert_pending_firing_and_delivered(
    prometheus_binaries: dict[str, str], alertmanager_binaries: dict[str, str]
) -> None:
    binaries = {
        Path(p).parent for p in (*prometheus_binaries.values(), *alertmanager_binaries.values())
    }
    environment = {
        **os.environ,
        "PATH": ":".join([*map(str, binaries), os.environ["PATH"]]),
        "PYTHONUNBUFFERED": "1",
    }
    demo = subprocess.Popen(
        [*DEMO, "--fire", "--fire-for", "5s", "--duration", "120", "--drift-after", "0"]
        + ["--rate", "30", "--scrape-interval", "1", "--report-every", "60"],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    name = re.escape("StrokeFeatureDrift{feature=age}")
    delivered = re.compile(
        rf"^\d\d:\d\d:\d\d DELIVERED  webhook 'stroke-risk-team' got FIRING {name} "
    )
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if delivered.search(line):
                break
        os.killpg(demo.pid, signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    output = "\n".join(lines) + "\n" + rest
    assert demo.returncode == 0, output

    def first(pattern: str) -> int:
        return next(i for i, line in enumerate(lines) if re.search(pattern, line))

    pending = first(rf"^\d\d:\d\d:\d\d PENDING    {name}: .* holds for 5s$")
    firing = first(rf"^\d\d:\d\d:\d\d FIRING     {name}: held for 5s; sent to Alertmanager$")
    # Delivery follows firing by Alertmanager's group_wait (1 s); the demo polls more often.
    assert pending < firing < first(delivered.pattern), output
    # The short rules are loaded only once Prometheus sees traffic: no start-up alert fires.
    assert first(r"alert rules loaded: Prometheus sees the service up with traffic") < pending
    assert not re.search(r"FIRING +Stroke(ServiceDown|NoTraffic)", output), output
    assert re.search(r"^webhook notifications received: [1-9]", rest, re.M), output
    urls = dict(
        re.findall(r"^  (service|Prometheus|Alertmanager) +http://127\.0\.0\.1:(\d+)", output, re.M)
    )
    assert set(urls) == {"service", "Prometheus", "Alertmanager"}, output
    assert output.rstrip().endswith("stopped.")
    assert not any(port_open(int(port)) for port in urls.values())
