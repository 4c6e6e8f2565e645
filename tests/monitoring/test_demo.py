"""monitoring.demo: alert timing from Prometheus' rules API, and the real demo, bounded."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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


@pytest.mark.e2e
def test_demo_reports_drift_and_pending_alerts_then_stops_everything_on_ctrl_c(
    prometheus_binaries: dict[str, str],
) -> None:
    assert (REPO_ROOT / "models" / "model.joblib").is_file(), "run dvc repro first"
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


@pytest.mark.e2e
def test_demo_drifts_after_a_clean_phase_and_stops_after_its_duration(
    prometheus_binaries: dict[str, str],
) -> None:
    environment = {
        **os.environ,
        "PATH": f"{Path(prometheus_binaries['prometheus']).parent}:{os.environ['PATH']}",
    }
    started = time.monotonic()
    result = subprocess.run(
        [*DEMO, "--duration", "20", "--drift-after", "8", "--rate", "30", "--scrape-interval", "1"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "drift age+25 after 8 s" in output
    clean, drifted = output.split("--- from now on the traffic drifts: age+25 ---")
    # The report just before the drift starts: training-like traffic, no significant PSI.
    assert "--- after 8s ---" in clean
    assert re.search(r"^  \w+ +PSI +\d+\.\d{3}  (stable|moderate)$", clean, re.M), output
    assert not re.search(r"PSI +\d+\.\d{3}  significant", clean), output
    assert "--- after 20s ---" in drifted
    assert re.search(r"^  age +PSI +\d+\.\d{3}  significant$", drifted, re.M), output
    assert output.rstrip().endswith("stopped.")
    assert time.monotonic() - started < 60
