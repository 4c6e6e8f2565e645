"""monitoring/nginx/nginx.conf for real: nginx in front of two replicas found by DNS.

What docker compose runs, without Docker: two instances of the service on two loopback
addresses (127.0.0.2 and 127.0.0.3, the same port, as two containers would have),
sharing one prediction log; a small DNS server answering the name ``app`` with both
addresses, as Docker's embedded DNS does for a scaled service; and nginx running the
repository's config. The test copy of the config changes only what ties it to a
container: the resolver's address, the port, the listen address, and where nginx keeps
its pid and temporary files. Checked:

- requests through nginx reach both replicas and are each answered once (the replicas'
  own counters add up to what was sent);
- feedback through nginx is accepted whichever replica it reaches (the shared log);
- nginx does not serve /metrics;
- slow clients trickling their request bodies are held by nginx (it reads a request
  whole before passing it on): /predict and /health still answer within a second.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from stroke_risk.data.schema import EXAMPLE_RECORD
from stroke_risk.ports import free_port_on
from tests.app.conftest import SERVER_COMMAND
from tests.monitoring.test_prometheus_e2e import REPO_ROOT, server_environment

NGINX_CONF = REPO_ROOT / "monitoring" / "nginx" / "nginx.conf"
REPLICA_ADDRESSES = ("127.0.0.2", "127.0.0.3")
# Built on the schema's example, so a field added to the schema is present here too.
RECORD = {
    **EXAMPLE_RECORD,
    "gender": "Female",
    "age": 61.0,
    "hypertension": 0,
    "heart_disease": 0,
    "ever_married": "Yes",
    "work_type": "Self-employed",
    "Residence_type": "Rural",
    "avg_glucose_level": 202.21,
    "bmi": None,
    "smoking_status": "never smoked",
}
SENT = 40
SLOW_CLIENTS = 50


class DNSServer:
    """Answers A queries for one name with fixed addresses (TTL 1 s); NXDOMAIN otherwise."""

    def __init__(self, name: str, addresses: tuple[str, ...]) -> None:
        self.name, self.addresses = name, addresses
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def answer(self, query: bytes) -> bytes:
        (query_id,) = struct.unpack("!H", query[:2])
        labels, position = [], 12
        while query[position]:
            length = query[position]
            labels.append(query[position + 1 : position + 1 + length].decode().lower())
            position += 1 + length
        question = query[12 : position + 5]
        qtype = struct.unpack("!H", query[position + 1 : position + 3])[0]
        if ".".join(labels) != self.name or qtype != 1:
            return struct.pack("!HHHHHH", query_id, 0x8183, 1, 0, 0, 0) + question
        answers = b"".join(
            struct.pack("!HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(address)
            for address in self.addresses
        )
        header = struct.pack("!HHHHHH", query_id, 0x8180, 1, len(self.addresses), 0, 0)
        return header + question + answers

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                query, client = self.socket.recvfrom(512)
            except TimeoutError:
                continue
            self.socket.sendto(self.answer(query), client)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.socket.close()


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    server = DNSServer("app", REPLICA_ADDRESSES)
    try:
        yield server
    finally:
        server.close()


def test_dns_stub_answers_like_dockers_dns(dns: DNSServer) -> None:
    query = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x03app\x00" + b"\x00\x01\x00\x01"
    answer = dns.answer(query)
    assert struct.unpack("!HHHHHH", answer[:12]) == (7, 0x8180, 1, 2, 0, 0)
    assert answer.endswith(socket.inet_aton("127.0.0.3"))
    unknown = query.replace(b"\x03app", b"\x03abc")
    assert struct.unpack("!HHHHHH", dns.answer(unknown)[:12])[1] == 0x8183


def test_config_copy_changes_only_the_container_specifics(tmp_path: Path) -> None:
    rendered = render_nginx_config(tmp_path, dns_port=5353, app_port=18000, listen=18080)
    original = NGINX_CONF.read_text()
    body = original[original.index("server {") :]
    changed = body.replace("app:8000", "app:18000").replace(
        "listen 8000;", "listen 127.0.0.1:18080;"
    )
    assert changed in rendered


def render_nginx_config(directory: Path, *, dns_port: int, app_port: int, listen: int) -> str:
    """The repository's nginx.conf for this machine (see the module docstring)."""
    text = NGINX_CONF.read_text()
    replacements = {
        "resolver 127.0.0.11 ": f"resolver 127.0.0.1:{dns_port} ",
        "app:8000;": f"app:{app_port};",
        "listen 8000;": f"listen 127.0.0.1:{listen};",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    temporary = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", f"http {{\n{temporary}\n", 1)
    return f"daemon off;\nuser root;\npid {directory / 'nginx.pid'};\n{text}"


def predict_requests_answered(metrics_text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (
                sample.name == "stroke_http_requests_total"
                and sample.labels.get("endpoint") == "/predict"
            ):
                total += sample.value
    return total


@pytest.mark.scenario
@pytest.mark.e2e
def test_nginx_spreads_requests_over_every_replica_and_holds_slow_clients(
    tmp_path: Path,
    nginx_binary: str,
    dns: DNSServer,
    processes: Any,
    get_free_port: Callable[[], int],
    poll: Callable[..., bool],
) -> None:
    app_port = free_port_on(REPLICA_ADDRESSES)
    shared_log = tmp_path / "predictions.sqlite"
    for index, address in enumerate(REPLICA_ADDRESSES):
        directory = tmp_path / f"replica{index}"
        directory.mkdir()
        environment = server_environment(directory, app_port)
        environment.update({"HOST": address, "STROKE_MONITOR_DB": str(shared_log)})
        processes.start(
            SERVER_COMMAND, log_path=directory / "gunicorn.log", cwd=REPO_ROOT, env=environment
        )
    lb_port = get_free_port()
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    config = nginx_dir / "nginx.conf"
    config.write_text(
        render_nginx_config(nginx_dir, dns_port=dns.port, app_port=app_port, listen=lb_port)
    )
    test = processes.start(
        [nginx_binary, "-t", "-p", str(nginx_dir), "-c", str(config), "-e", "stderr"],
        log_path=nginx_dir / "test.log",
    )
    assert test.wait(timeout=30) == 0, (nginx_dir / "test.log").read_text()
    processes.start(
        [nginx_binary, "-p", str(nginx_dir), "-c", str(config), "-e", "stderr"],
        log_path=nginx_dir / "nginx.log",
    )
    lb = f"http://127.0.0.1:{lb_port}"
    for address in REPLICA_ADDRESSES:
        url = f"http://{address}:{app_port}/ready"
        assert poll(lambda u=url: requests.get(u, timeout=1).ok, timeout=60), url
    assert poll(lambda: requests.get(f"{lb}/ready", timeout=1).ok, timeout=30), (
        nginx_dir / "nginx.log"
    ).read_text()

    # --- every request answered once, by one of the replicas, all replicas used -----------
    ids = []
    with requests.Session() as session:
        for _ in range(SENT):
            answer = session.post(f"{lb}/predict", json=RECORD, timeout=5)
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["prediction_id"])
        answered = [
            predict_requests_answered(
                requests.get(f"http://{address}:{app_port}/metrics", timeout=5).text
            )
            for address in REPLICA_ADDRESSES
        ]
        assert sum(answered) == SENT and min(answered) > 0, answered
        # Feedback lands on either replica: the shared log knows every prediction.
        for prediction_id in ids:
            feedback = session.post(
                f"{lb}/feedback", json={"prediction_id": prediction_id, "stroke": 0}, timeout=5
            )
            assert feedback.status_code == 201, feedback.text
        assert session.get(f"{lb}/metrics", timeout=5).status_code == 404
        # The app's own errors pass through unchanged (JSON naming the field).
        invalid = session.post(f"{lb}/predict", json={**RECORD, "age": 230}, timeout=5)
        assert invalid.status_code == 400 and invalid.json()["details"][0]["field"] == "age"

    # --- slow clients wait in nginx, not in the replicas' workers -------------------------
    slow = []
    try:
        for _ in range(SLOW_CLIENTS):
            client = socket.create_connection(("127.0.0.1", lb_port), timeout=5)
            # Whole headers, then a body that trickles: only a proxy that reads the
            # body before passing the request on keeps these off the replicas.
            client.sendall(
                b"POST /predict HTTP/1.1\r\nHost: slow\r\n"
                b"Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{"
            )
            slow.append(client)
        time.sleep(0.5)
        for client in slow:
            client.sendall(b" ")
        started = time.monotonic()
        answer = requests.post(f"{lb}/predict", json=RECORD, timeout=5)
        elapsed = time.monotonic() - started
        health = requests.get(f"{lb}/health", timeout=5)
    finally:
        for client in slow:
            client.close()
    assert answer.status_code == 200 and health.status_code == 200
    # A replica held by a slow client would not answer before the 5 s timeout at all.
    assert elapsed < 4.0, f"/predict took {elapsed:.2f} s behind {SLOW_CLIENTS} slow clients"
    log = (nginx_dir / "nginx.log").read_text()
    assert not re.search(r"\[(emerg|alert|crit)\]", log), log
