"""What makes an alert of `make demo ALERT_DEMO=1` fire within a minute and be delivered.

Used by `python -m monitoring.demo --fire`:

- ``shorten_hold_times``: the repository's alert rules (monitoring/prometheus/
  alert_rules.yml) with every ``for:`` replaced by a short one, generated from the real
  file each run, so the demo's rules never drift from the committed ones;
- ``render_alertmanager_config``: the committed monitoring/alertmanager/alertmanager.yml
  (routes, grouping, inhibition) with every receiver's webhook pointed at the demo's own
  receiver and a short ``group_wait``;
- ``WebhookReceiver``: a loopback HTTP server that prints each notification Alertmanager
  posts (its webhook payload, version 4) and keeps them for the caller;
- ``alert_transitions``: the lines to print when an alert goes pending, firing or away.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

MONITORING_DIR = Path(__file__).resolve().parent
ALERT_RULES = MONITORING_DIR / "prometheus" / "alert_rules.yml"
ALERTMANAGER_CONFIG = MONITORING_DIR / "alertmanager" / "alertmanager.yml"
WEBHOOK_PATH = "/alerts"
# Labels every alert of ours carries (service: Prometheus' external label); the rest (e.g.
# feature) tell alerts of one rule apart.
ROUTING_LABELS = ("alertname", "severity", "component", "service")


def shorten_hold_times(rules_document: Mapping[str, Any], hold_for: str) -> dict[str, Any]:
    """A copy of a Prometheus rules document with every alert's ``for:`` set to hold_for.

    Recording rules and alerts without ``for:`` are unchanged; so is everything else
    (expressions, labels, annotations).
    """
    groups = []
    for group in rules_document["groups"]:
        rules = []
        for rule in group["rules"]:
            rule = dict(rule)
            if "alert" in rule and "for" in rule:
                rule["for"] = hold_for
            rules.append(rule)
        groups.append({**group, "rules": rules})
    return {**rules_document, "groups": groups}


def render_alertmanager_config(
    source: Mapping[str, Any], webhook_url: str, *, group_wait: str = "1s"
) -> dict[str, Any]:
    """The committed Alertmanager config with every webhook sent to webhook_url.

    The top route's group_wait (30 s as committed: time to batch alerts of one group)
    becomes group_wait, so the first notification leaves as soon as an alert fires.
    Raises ValueError if the config has no webhook receiver to redirect.
    """
    config: dict[str, Any] = json.loads(json.dumps(source))  # a deep copy
    redirected = 0
    for receiver in config.get("receivers", []):
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = webhook_url
            redirected += 1
    if not redirected:
        raise ValueError("the Alertmanager config has no webhook_configs to redirect")
    config["route"]["group_wait"] = group_wait
    return config


def display_name(labels: Mapping[str, str]) -> str:
    """'StrokeFeatureDrift{feature=age}': the alert name and its distinguishing labels."""
    rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ROUTING_LABELS)
    name = labels.get("alertname", "?")
    return f"{name}{{{rest}}}" if rest else name


def format_notification(payload: Mapping[str, Any]) -> list[str]:
    """One line per alert of an Alertmanager webhook notification."""
    receiver, status = payload.get("receiver", "?"), payload.get("status", "?")
    lines = []
    for alert in payload.get("alerts", []):
        labels = alert.get("labels", {})
        summary = alert.get("annotations", {}).get("summary", "")
        lines.append(
            f"DELIVERED  webhook {receiver!r} got {alert.get('status', status).upper()}"
            f" {display_name(labels)} (severity {labels.get('severity', '-')})"
            + (f": {summary}" if summary else "")
        )
    return lines


class WebhookReceiver:
    """An HTTP server on host:0 that prints and keeps every JSON notification POSTed to it.

    ``url`` is the address to configure in Alertmanager; ``notifications`` the payloads
    received so far (thread-safe to read through ``received()``).
    """

    def __init__(self, host: str, *, echo: Callable[[str], None] = print) -> None:
        self._host = host
        self._lock = threading.Lock()
        self._notifications: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    payload = json.loads(self.rfile.read(length))
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver._notifications.append(payload)
                for line in format_notification(payload):
                    echo(line)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # one line per alert is printed above; no access log

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="alert-webhook", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_address[1]}{WEBHOOK_PATH}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._notifications)


@dataclass(frozen=True)
class AlertState:
    name: str  # display_name
    state: str  # "pending" or "firing"


def alert_transitions(
    previous: Mapping[str, str], current: Sequence[AlertState], *, hold_for: str
) -> tuple[list[str], dict[str, str]]:
    """Lines for alerts that appeared, changed state or went away, and the new states."""
    now = {alert.name: alert.state for alert in current}
    lines = []
    for name, state in now.items():
        if previous.get(name) == state:
            continue
        if state == "pending":
            lines.append(
                f"PENDING    {name}: its expression holds; fires if it holds for {hold_for}"
            )
        else:
            lines.append(f"FIRING     {name}: held for {hold_for}; sent to Alertmanager")
    lines += [f"RESOLVED   {name}" for name in previous if name not in now]
    return lines, now


def write_yaml(path: Path, document: Mapping[str, Any], *, header: str) -> Path:
    """Write a generated YAML file with a comment saying where it came from."""
    path.write_text(f"# {header}\n" + yaml.safe_dump(dict(document), sort_keys=False))
    return path
