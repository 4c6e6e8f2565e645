"""The monitoring demo: the service, a real Prometheus and drifted traffic, on free ports.

    .venv/bin/python -m monitoring.demo                 # until Ctrl-C
    .venv/bin/python -m monitoring.demo --duration 60   # one minute, then stop

Starts, each on a free loopback port, with its files in one temporary directory:

1. the service as ``make serve`` runs it (gunicorn, app/gunicorn_conf.py, the model in
   models/), its prediction log in the temporary directory;
2. Prometheus with the repository's alert rules (monitoring/prometheus/), scraping the
   service and evaluating the rules every ``--scrape-interval``;
3. the traffic simulator (python -m monitoring.simulate) with feedback on a share of the
   records: like the training data for ``--drift-after`` seconds (30), so the label-free
   estimates can be seen tracking the label-based figures, then with drift (``--drift``,
   default ``age+25``).

Every ``--report-every`` seconds it prints what the service reports (the features that
drifted most, the multivariate drift classifier's AUC, label-based and estimated
performance) and which alerts are pending or firing: an alert becomes active when its
expression holds and fires once it has held for its rule's ``for:`` (30 minutes for the
drift alerts), so the demo prints when each pending alert will fire. Ctrl-C (or the end
of ``--duration``) stops every process it started and removes the directory.

With ``--fire`` (``make demo ALERT_DEMO=1``) an alert goes all the way: the rules are
generated from the repository's alert_rules.yml with every ``for:`` set to ``--fire-for``
(10 s), a real Alertmanager runs with the repository's alertmanager.yml whose webhook points
at a small HTTP receiver inside the demo, and the demo prints each alert as it goes
PENDING, then FIRING, then each notification the receiver gets (DELIVERED).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
import yaml

from app.credentials import add_credential, parse_scopes
from monitoring.alert_demo import (
    ALERT_RULES,
    ALERTMANAGER_CONFIG,
    AlertState,
    WebhookReceiver,
    alert_transitions,
    display_name,
    render_alertmanager_config,
    shorten_hold_times,
    write_yaml,
)
from monitoring.prometheus_config import render_prometheus_config
from monitoring.simulate import (
    TOKEN_VARIABLE,
    auth_headers,
    fetch_service_figures,
    format_service_figures,
)
from stroke_risk import paths
from stroke_risk.ports import LOOPBACK, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE_ARTIFACTS = (paths.SERVING_MODEL, paths.REFERENCE_PROFILE, paths.DVC_LOCK)
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name first
ALERT_POLL_SECONDS = 0.4
HOLD_TIME = re.compile(r"^[1-9][0-9]*[sm]$")


class DemoError(Exception):
    """A reason the demo cannot run, as one line with the fix."""


@dataclass
class Processes:
    """Processes the demo started, each leading its own process group, stopped in reverse."""

    directory: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        log = open(self.directory / f"{name}.log", "wb")  # noqa: SIM115 - closed by the child's exit
        try:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        finally:
            log.close()  # the child holds its own descriptor
        self.started.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.directory / f"{name}.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def first_exited(self, names: Sequence[str]) -> str | None:
        """The first of these processes that has exited, if any."""
        return next(
            (n for n, process in self.started if n in names and process.poll() is not None), None
        )

    def stop(self, name: str) -> None:
        """Stop the named process (and its group) if it still runs."""
        for started_name, process in self.started:
            if started_name == name:
                terminate(process)

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            terminate(process)


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's group (it leads one: gunicorn's workers too), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def check_prerequisites() -> str:
    """Return the prometheus binary; DemoError names what is missing and the command."""
    missing = [path for path in SERVICE_ARTIFACTS if not (REPO_ROOT / path).is_file()]
    if missing:
        raise DemoError(
            f"{', '.join(missing)} missing: run `make run` (the DVC pipeline) before the demo"
        )
    binary = shutil.which("prometheus")
    if binary is None:
        raise DemoError("prometheus is not installed: run `make system-deps` (Debian package)")
    return binary


def find_alertmanager() -> str:
    """Return the Alertmanager binary; DemoError names the package to install."""
    for name in ALERTMANAGER_BINARIES:
        binary = shutil.which(name)
        if binary is not None:
            return binary
    raise DemoError(
        "prometheus-alertmanager is not installed: run `make system-deps` (Debian package)"
    )


def wait_until_ready(
    url: str, processes: Processes, name: str, stop: threading.Event, timeout: float
) -> None:
    """Poll url until it answers 200; DemoError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        if processes.first_exited([name]) == name:
            raise DemoError(f"{name} exited at start-up:\n{processes.log_tail(name)}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    if not stop.is_set():
        raise DemoError(f"{name} not ready after {timeout:.0f} s:\n{processes.log_tail(name)}")


def demo_credentials(directory: Path) -> tuple[Path, str, Path]:
    """Credentials of the demo in directory: (credentials file, the simulator's token, a
    file holding Prometheus's scrape token)."""
    credentials = directory / "credentials"
    traffic = add_credential(credentials, "demo-traffic", parse_scopes("predict,feedback,metrics"))
    scrape_token = directory / "prometheus-token"
    scrape_token.write_text(add_credential(credentials, "prometheus", parse_scopes("metrics")))
    scrape_token.chmod(0o600)
    return credentials, traffic, scrape_token


def service_environment(
    directory: Path, port: int, credentials: Path | None = None
) -> dict[str, str]:
    """The inherited environment with the service's address and state in directory."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PROMETHEUS_MULTIPROC_DIR", "STROKE_MONITOR_DB", "HOST", "PORT")
    }
    (directory / "multiproc").mkdir()
    environment.update(
        {
            "HOST": LOOPBACK,
            "PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(directory / "multiproc"),
            "STROKE_MONITOR_DB": str(directory / "predictions.sqlite"),
            "STROKE_ACCESS_LOG": "",
        }
    )
    if credentials is not None:
        environment["STROKE_CREDENTIALS_FILE"] = str(credentials)
    return environment


# --- alerts: pending, firing, and when ---------------------------------------------------


@dataclass(frozen=True)
class ActiveAlert:
    name: str
    labels: dict[str, str]
    state: str  # "pending" or "firing"
    active_at: datetime
    hold_for: timedelta  # the rule's `for:`

    @property
    def fires_at(self) -> datetime:
        return self.active_at + self.hold_for

    @property
    def display_name(self) -> str:
        return display_name({"alertname": self.name, **self.labels})


def parse_timestamp(text: str) -> datetime:
    """Prometheus' RFC 3339 timestamps (nanoseconds, 'Z') as an aware datetime."""
    head, _, fraction = text.rstrip("Z").partition(".")
    micro = (fraction + "000000")[:6] if fraction else "0"
    return datetime.fromisoformat(head).replace(microsecond=int(micro), tzinfo=UTC)


def active_alerts(rules_document: dict[str, Any]) -> list[ActiveAlert]:
    """Active alerts of Prometheus' /api/v1/rules data, each with its rule's `for:`."""
    alerts = []
    for group in rules_document["groups"]:
        for rule in group["rules"]:
            if rule.get("type") != "alerting":
                continue
            for alert in rule.get("alerts", []):
                labels = {
                    key: value
                    for key, value in alert["labels"].items()
                    if key not in ("alertname", "severity", "component")
                }
                alerts.append(
                    ActiveAlert(
                        name=rule["name"],
                        labels=labels,
                        state=alert["state"],
                        active_at=parse_timestamp(alert["activeAt"]),
                        hold_for=timedelta(seconds=float(rule.get("duration", 0))),
                    )
                )
    return sorted(alerts, key=lambda a: (a.state != "firing", a.fires_at, a.name))


def describe_duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    if not minutes:
        return f"{seconds}s"
    return f"{minutes}m{seconds:02d}s" if seconds else f"{minutes}m"


def format_alerts(alerts: Sequence[ActiveAlert], now: datetime) -> str:
    """One line per active alert: firing, or pending and when it will fire."""
    if not alerts:
        return "alerts: none active yet (rules are evaluated every scrape interval)"
    lines = ["alerts:"]
    for alert in alerts:
        name = alert.display_name
        if alert.state == "firing":
            lines.append(f"  FIRING   {name} since {alert.fires_at:%H:%M:%S} UTC")
            continue
        lines.append(
            f"  pending  {name}: active since {alert.active_at:%H:%M:%S}; fires at"
            f" {alert.fires_at:%H:%M:%S} UTC (in {describe_duration(alert.fires_at - now)},"
            f" its rule's `for: {describe_duration(alert.hold_for)}`) if it persists"
        )
    return "\n".join(lines)


# --- the demo ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    duration_seconds: float | None
    report_every_seconds: float
    scrape_interval_seconds: int
    rate_per_second: float
    drift: tuple[str, ...]
    drift_after_seconds: float
    feedback_rate: float
    seed: int
    fire_for: str | None = None  # --fire: every rule's `for:`, an Alertmanager, a webhook


def simulator_command(
    config: DemoConfig, app_url: str, *, seconds: float, drift: Sequence[str], seed: int
) -> list[str]:
    """python -m monitoring.simulate for that many seconds at the demo's rate."""
    command = [
        sys.executable,
        "-m",
        "monitoring.simulate",
        "--url",
        app_url,
        "--requests",
        str(min(1_000_000, max(1, int(seconds * config.rate_per_second)))),
        "--rate",
        str(config.rate_per_second),
        "--feedback-rate",
        str(config.feedback_rate),
        "--seed",
        str(seed),
        "--no-report",
    ]
    for spec in drift:
        command += ["--drift", spec]
    return command


def fetch_rules(session: requests.Session, prometheus_url: str) -> dict[str, Any] | None:
    """Prometheus' /api/v1/rules data, or None if it cannot be read right now."""
    try:
        rules: dict[str, Any] = session.get(f"{prometheus_url}/api/v1/rules", timeout=5).json()[
            "data"
        ]
    except (requests.RequestException, ValueError, KeyError):
        return None
    return rules


def print_report(app_url: str, prometheus_url: str, started: float, token: str = "") -> None:
    """What the service and Prometheus say now."""
    with requests.Session() as session:
        session.headers.update(auth_headers({TOKEN_VARIABLE: token}))
        figures = fetch_service_figures(session, app_url, timeout_seconds=5)
        rules = fetch_rules(session, prometheus_url)
    elapsed = describe_duration(timedelta(seconds=time.monotonic() - started))
    print(f"\n--- after {elapsed} ---", flush=True)
    if figures is None:
        print("service figures: /metrics could not be read", flush=True)
    else:
        print(format_service_figures(figures), flush=True)
    if rules is None:
        print("alerts: Prometheus could not be read", flush=True)
    else:
        print(format_alerts(active_alerts(rules), datetime.now(UTC)), flush=True)


def run_demo(config: DemoConfig, stop: threading.Event) -> int:
    """Start everything, report until stop is set or the duration ends, stop everything."""
    prometheus_binary = check_prerequisites()
    alertmanager_binary = find_alertmanager() if config.fire_for else None
    directory = Path(tempfile.mkdtemp(prefix="stroke-demo-"))
    processes = Processes(directory)
    webhook: WebhookReceiver | None = None
    try:
        app_port, prometheus_port = free_port(), free_port()
        app_url = f"http://{LOOPBACK}:{app_port}"
        prometheus_url = f"http://{LOOPBACK}:{prometheus_port}"
        print(f"starting the service and Prometheus (files in {directory}) ...", flush=True)
        credentials, token, scrape_token = demo_credentials(directory)
        processes.start(
            "service",
            [sys.executable, "-m", "gunicorn", "-c", "app/gunicorn_conf.py", "app:create_app()"],
            cwd=REPO_ROOT,
            env=service_environment(directory, app_port, credentials),
        )
        # Prometheus starts once the service answers and traffic flows, so no alert holds
        # at start-up only because the service was still loading (with --fire's short
        # for:, StrokeServiceDown or StrokeNoTraffic would otherwise fire at once).
        wait_until_ready(f"{app_url}/ready", processes, "service", stop, START_TIMEOUT_SECONDS)
        if stop.is_set():
            return 0
        started = time.monotonic()
        deadline = started + config.duration_seconds if config.duration_seconds else None
        drift_at = started + config.drift_after_seconds if config.drift else None
        clean_seconds = config.drift_after_seconds if config.drift else None
        phase = "clean" if clean_seconds else "drifted"
        processes.start(
            "simulator",
            simulator_command(
                config,
                app_url,
                seconds=clean_seconds or config.duration_seconds or 24 * 3600,
                drift=() if clean_seconds else config.drift,
                seed=config.seed,
            ),
            cwd=REPO_ROOT,
            env={**os.environ, TOKEN_VARIABLE: token},
        )
        interval = f"{config.scrape_interval_seconds}s"
        alertmanager_address = None
        if alertmanager_binary is not None and config.fire_for is not None:
            webhook = WebhookReceiver(LOOPBACK, echo=print_stamped)
            webhook.start()
            alertmanager_address = start_alertmanager(
                alertmanager_binary, processes, webhook.url, stop
            )
        prometheus_config = render_prometheus_config(
            f"{LOOPBACK}:{app_port}",
            scrape_interval=interval,
            evaluation_interval=interval,
            alertmanager=alertmanager_address,
            credentials_file=scrape_token,
        )
        config_path = directory / "prometheus.yml"
        short_rules: Path | None = None
        if config.fire_for is not None:
            short_rules = write_yaml(
                directory / "alert_rules.yml",
                shorten_hold_times(yaml.safe_load(ALERT_RULES.read_text()), config.fire_for),
                header=f"generated from {ALERT_RULES.relative_to(REPO_ROOT)} with"
                f" every for: set to {config.fire_for} (monitoring.demo --fire)",
            )
            # Loaded once Prometheus has seen the service up with traffic (arm_rules).
            prometheus_config["rule_files"] = []
        config_path.write_text(yaml.safe_dump(prometheus_config))
        prometheus = processes.start(
            "prometheus",
            [
                prometheus_binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address={LOOPBACK}:{prometheus_port}",
                "--log.level=warn",
            ],
        )
        wait_until_ready(
            f"{prometheus_url}/-/ready", processes, "prometheus", stop, START_TIMEOUT_SECONDS
        )
        if short_rules is not None:
            prometheus_config["rule_files"] = [str(short_rules)]
            config_path.write_text(yaml.safe_dump(prometheus_config))
            arm_rules(prometheus, prometheus_url, processes, stop)
        if stop.is_set():
            return 0
        psi_graph = quote("max by (feature) (stroke_feature_psi)")
        drift = ", ".join(config.drift) or "none"
        print(
            "\n".join(
                [
                    "stroke-risk monitoring demo (Ctrl-C stops everything)",
                    f"  service      {app_url}/  (the clinician page; API: {app_url}/openapi.json)",
                    f"  metrics      {app_url}/metrics",
                    f"  Prometheus   {prometheus_url}/alerts",
                    f"  PSI graph    {prometheus_url}/graph?g0.expr={psi_graph}&g0.tab=0",
                    f"  traffic      {config.rate_per_second:g} requests/s, feedback on"
                    f" {config.feedback_rate:.0%} of records; drift {drift}"
                    + (
                        f" after {config.drift_after_seconds:g} s"
                        if config.drift and config.drift_after_seconds
                        else ""
                    ),
                    f"  logs         {directory}/*.log (removed at exit)",
                ]
                + (
                    [
                        f"  Alertmanager http://{alertmanager_address}/#/alerts",
                        f"  webhook      {webhook.url} (prints each notification)",
                        f"  alert rules  every `for:` set to {config.fire_for}: alerts fire"
                        " soon after their expression holds",
                    ]
                    if webhook is not None and alertmanager_address is not None
                    else []
                )
            ),
            flush=True,
        )
        next_report = started + min(config.report_every_seconds, 10.0)
        alert_states: dict[str, str] = {}
        next_alert_poll = started
        while not stop.is_set():
            now = time.monotonic()
            if config.fire_for is not None and now >= next_alert_poll:
                alert_states = print_alert_transitions(
                    prometheus_url, alert_states, hold_for=config.fire_for
                )
                # Often enough that FIRING is printed before Alertmanager's delivery (its
                # group_wait is 1 s), which the receiver prints as it arrives.
                next_alert_poll = now + ALERT_POLL_SECONDS
            if deadline is not None and now >= deadline:
                break
            crashed = processes.first_exited(["service", "prometheus", "alertmanager"])
            if crashed is not None:
                print(f"{crashed} stopped:\n{processes.log_tail(crashed)}", flush=True)
                return 1
            if phase == "clean" and drift_at is not None and now >= drift_at:
                print_report(app_url, prometheus_url, started, token)
                processes.stop("simulator")
                remaining = (deadline - now) if deadline is not None else 24 * 3600
                processes.start(
                    "simulator-drift",
                    simulator_command(
                        config,
                        app_url,
                        seconds=max(1.0, remaining),
                        drift=config.drift,
                        seed=config.seed + 1,
                    ),
                    cwd=REPO_ROOT,
                    env={**os.environ, TOKEN_VARIABLE: token},
                )
                phase = "drifted"
                print(f"\n--- from now on the traffic drifts: {drift} ---", flush=True)
                next_report = now + config.report_every_seconds
            if processes.first_exited(["simulator-drift"]) and deadline is None:
                break  # it sent its whole bound
            if now >= next_report:
                print_report(app_url, prometheus_url, started, token)
                next_report = now + config.report_every_seconds
            stop.wait(0.2)
        print_report(app_url, prometheus_url, started, token)
        if webhook is not None:
            print(f"webhook notifications received: {len(webhook.received())}", flush=True)
        return 0
    finally:
        extra = ", Alertmanager" if config.fire_for is not None else ""
        print(f"stopping the simulator, Prometheus{extra} and the service ...", flush=True)
        processes.stop_all()
        if webhook is not None:
            webhook.stop()
        shutil.rmtree(directory, ignore_errors=True)
        print("stopped.", flush=True)


def start_alertmanager(
    binary: str, processes: Processes, webhook_url: str, stop: threading.Event
) -> str:
    """Start Alertmanager with the repository's config sending to webhook_url; its address."""
    port = free_port()
    config = render_alertmanager_config(
        yaml.safe_load(ALERTMANAGER_CONFIG.read_text()), webhook_url
    )
    path = write_yaml(
        processes.directory / "alertmanager.yml",
        config,
        header=f"generated from {ALERTMANAGER_CONFIG.relative_to(REPO_ROOT)}: webhooks to the"
        " demo's receiver (monitoring.demo --fire)",
    )
    processes.start(
        "alertmanager",
        [
            binary,
            f"--config.file={path}",
            f"--storage.path={processes.directory / 'alertmanager'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--cluster.listen-address=",  # one instance: no gossip port
            "--log.level=warn",
        ],
    )
    wait_until_ready(
        f"http://{LOOPBACK}:{port}/-/ready", processes, "alertmanager", stop, START_TIMEOUT_SECONDS
    )
    return f"{LOOPBACK}:{port}"


def prometheus_has_result(prometheus_url: str, query: str) -> bool:
    """Whether an instant query returns at least one sample right now."""
    try:
        answer = requests.get(
            f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5
        ).json()
        return bool(answer["data"]["result"])
    except (requests.RequestException, ValueError, KeyError):
        return False


def arm_rules(
    prometheus: subprocess.Popen[bytes],
    prometheus_url: str,
    processes: Processes,
    stop: threading.Event,
) -> None:
    """Make Prometheus load its (rewritten) rule files once it sees the service up with
    /predict traffic, then wait until the rules are loaded.

    With a 10 s for:, rules evaluated from Prometheus' first second would fire
    StrokeServiceDown (no scrape yet: `up` absent) or StrokeNoTraffic (one sample: no
    rate yet) on a slow start; the demo is about drift, not its own start-up.
    """
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    traffic = 'sum(rate(stroke_http_requests_total{endpoint="/predict"}[1m])) > 0'
    while not prometheus_has_result(prometheus_url, traffic):
        if stop.is_set():
            return
        if time.monotonic() > deadline or processes.first_exited(["prometheus", "simulator"]):
            raise DemoError(
                "Prometheus saw no /predict traffic from the service:\n"
                + processes.log_tail("prometheus")
            )
        stop.wait(0.5)
    prometheus.send_signal(signal.SIGHUP)  # Prometheus' "reload the configuration"
    while not stop.is_set() and time.monotonic() < deadline:
        with requests.Session() as session:
            rules = fetch_rules(session, prometheus_url)
        if rules and rules.get("groups"):
            print_stamped("alert rules loaded: Prometheus sees the service up with traffic")
            return
        stop.wait(0.5)
    if not stop.is_set():
        raise DemoError("Prometheus did not load the demo's alert rules after SIGHUP")


def print_stamped(line: str) -> None:
    """Print a line of the alerts' story with the UTC time it happened."""
    print(f"{datetime.now(UTC):%H:%M:%S} {line}", flush=True)


def print_alert_transitions(
    prometheus_url: str, previous: dict[str, str], *, hold_for: str
) -> dict[str, str]:
    """Print alerts that went pending, firing or away since previous; the new states."""
    with requests.Session() as session:
        rules = fetch_rules(session, prometheus_url)
    if rules is None:
        return previous
    current = [AlertState(a.display_name, a.state) for a in active_alerts(rules)]
    lines, states = alert_transitions(previous, current, hold_for=hold_for)
    for line in lines:
        print_stamped(line)
    return states


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: Ctrl-C)",
    )
    parser.add_argument(
        "--report-every", type=float, default=15.0, help="seconds between reports (default 15)"
    )
    parser.add_argument(
        "--scrape-interval",
        type=int,
        default=2,
        help="Prometheus scrape and rule evaluation interval in seconds (default 2)",
    )
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second (default 10)")
    parser.add_argument(
        "--drift",
        action="append",
        default=None,
        help="drift spec for the simulator, repeatable (default: age+25; 'none' for none)",
    )
    parser.add_argument(
        "--drift-after",
        type=float,
        default=30.0,
        help="seconds of training-like traffic before the drift starts (default 30; 0: at once)",
    )
    parser.add_argument(
        "--feedback-rate", type=float, default=0.5, help="share of records given a label"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fire",
        action="store_true",
        help="make alerts fire and deliver them: rules with a short for:, a real"
        " Alertmanager and a webhook receiver that prints each notification",
    )
    parser.add_argument(
        "--fire-for",
        default="10s",
        help="with --fire: every alert rule's for: (default 10s; e.g. 5s, 1m)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """Validated DemoConfig; ValueError names the bad option."""
    if args.duration is not None and not 0 < args.duration <= 7 * 24 * 3600:
        raise ValueError("--duration must be between 0 and 604800 seconds")
    if not 1 <= args.report_every <= 3600:
        raise ValueError("--report-every must be between 1 and 3600 seconds")
    if not 1 <= args.scrape_interval <= 60:
        raise ValueError("--scrape-interval must be between 1 and 60 seconds")
    if not 0 < args.rate <= 500:
        raise ValueError("--rate must be between 0 and 500 requests per second")
    if not 0 <= args.feedback_rate <= 1:
        raise ValueError("--feedback-rate must be between 0 and 1")
    if not 0 <= args.drift_after <= 24 * 3600:
        raise ValueError("--drift-after must be between 0 and 86400 seconds")
    if not HOLD_TIME.match(args.fire_for):
        raise ValueError("--fire-for must be a whole number of seconds or minutes, e.g. 10s")
    drift = tuple(args.drift) if args.drift is not None else ("age+25",)
    drift = tuple(spec for spec in drift if spec.strip().lower() != "none")
    from monitoring.simulate import parse_drift

    for item in drift:
        for part in item.split(","):
            if part.strip():
                parse_drift(part)  # ValueError with the reason
    return DemoConfig(
        duration_seconds=args.duration,
        report_every_seconds=args.report_every,
        scrape_interval_seconds=args.scrape_interval,
        rate_per_second=args.rate,
        drift=drift,
        drift_after_seconds=args.drift_after,
        feedback_rate=args.feedback_rate,
        seed=args.seed,
        fire_for=args.fire_for if args.fire else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        return run_demo(config, stop)
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
