"""Hostile checks against the real server (gunicorn, real sockets), each one that failed
before the hardening of issue 19:

- 22 sockets that send 1 byte of a 1,000-byte body no longer starve a worker: each gets
  a JSON 408 after STROKE_BODY_TIMEOUT_SECONDS and /health answers meanwhile (shown
  failing with a long timeout);
- a duplicate JSON key is a 400 naming it; `GET /static//x` is no Host-built redirect;
- gunicorn's own answers to unparsable requests are JSON, not HTML;
- JSON answers carry nosniff and no-store; no client address reaches the logs;
- without credentials the server refuses a non-loopback bind, also one given with -b.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from app.credentials import add_credential, parse_scopes
from tests.app.conftest import RECORD, Server, free_port, run_server_expecting_failure

STALLED_SOCKETS = 22
WORKER_CONNECTIONS = 10  # per worker; 2 workers hold 20 stalled bodies, as in the issue
BODY_TIMEOUT_SECONDS = 1.0


@contextmanager
def stalled_bodies(url: str, count: int, token: str = "") -> Iterator[list[socket.socket]]:
    """Hold count connections that declare a 1,000-byte body and send 1 byte of it.

    With a token the requests are authorised, so the server goes on to read the body (an
    unauthorised one is answered 401 before its body is read)."""
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    try:
        for _ in range(count):
            connection = socket.create_connection((host, int(port)), timeout=10)
            connection.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + (f"Authorization: Bearer {token}\r\n".encode() if token else b"")
                + b"Content-Length: 1000\r\n\r\n{"
            )
            sockets.append(connection)
        yield sockets
    finally:
        for connection in sockets:
            connection.close()


def health_seconds(url: str, timeout: float) -> float | None:
    """Seconds a fresh /health took; None when it did not answer 200 within timeout."""
    started = time.perf_counter()
    try:
        ok = requests.get(f"{url}/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return None
    return time.perf_counter() - started if ok else None


def read_answer(connection: socket.socket) -> bytes:
    """Read what the server sends until it closes the connection (or 10 s pass)."""
    chunks = []
    connection.settimeout(10)
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def raw_request(server: Server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; return the status, headers (lower-case names) and body."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(data)
        answer = read_answer(connection)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.fixture
def token(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "credentials"
    return path, add_credential(path, "hostile-tests", parse_scopes("predict,feedback,metrics"))


@pytest.fixture
def hardened_server(
    server_factory: Callable[..., Server], token: tuple[Path, str]
) -> Iterator[Server]:
    server = server_factory(
        STROKE_CREDENTIALS_FILE=str(token[0]),
        STROKE_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_SECONDS),
        GUNICORN_CMD_ARGS=f"--worker-connections {WORKER_CONNECTIONS}",
    )
    server.extra["token"] = token[1]
    server.extra["headers"] = {"Authorization": f"Bearer {token[1]}"}
    yield server


def test_stalled_bodies_time_out_and_health_still_answers(hardened_server: Server) -> None:
    token = hardened_server.extra["token"]
    with stalled_bodies(hardened_server.url, STALLED_SOCKETS, token) as sockets:
        time.sleep(0.3)  # every worker slot holds a stalled body now
        seconds = health_seconds(hardened_server.url, timeout=BODY_TIMEOUT_SECONDS + 4)
        assert seconds is not None, "/health did not answer while bodies were stalled"
        answer = read_answer(sockets[0])
    status_line, _, body = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b'"request body timed out"' in body and b"must arrive within 1 s" in body


def test_the_stall_check_can_fail_with_a_long_deadline(
    server_factory: Callable[..., Server],
) -> None:
    """The same stall, deadline 60 s: /health waits behind the stalled bodies."""
    server = server_factory(
        STROKE_BODY_TIMEOUT_SECONDS="60",
        GUNICORN_CMD_ARGS=f"--worker-connections {WORKER_CONNECTIONS}",
    )
    with stalled_bodies(server.url, STALLED_SOCKETS):
        time.sleep(0.3)
        assert health_seconds(server.url, timeout=BODY_TIMEOUT_SECONDS + 2) is None


def test_hostile_requests_get_precise_json_answers(hardened_server: Server) -> None:
    url, headers = hardened_server.url, hardened_server.extra["headers"]
    duplicate = requests.post(
        f"{url}/predict",
        data=b'{"age": 30, "age": 130}',
        headers={**headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert duplicate.status_code == 400
    assert duplicate.json()["details"] == [
        {"field": "age", "message": "is given more than once; send each key once"}
    ]
    # werkzeug's merge_slashes would answer 308 with a Location built from this Host.
    slashes = requests.get(
        f"{url}/static//page.css",
        headers={"Host": "evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert slashes.status_code == 404 and "Location" not in slashes.headers
    assert slashes.json()["error"] == "not found"
    scored = requests.post(f"{url}/predict", json=RECORD, headers=headers, timeout=10)
    for answer in (scored, duplicate, slashes):
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),  # not a request line
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),  # unknown HTTP version
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400),  # space in a name
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),  # >100 fields
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # line too long
    ],
    ids=["request line", "version", "header name", "too many headers", "long line"],
)
def test_gunicorns_own_errors_are_json(
    real_server: Server, request_bytes: bytes, status: int
) -> None:
    got, headers, body = raw_request(real_server, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    assert b"<html>" not in body
    assert set(requests.models.complexjson.loads(body)) == {"error", "details"}


def test_no_client_address_is_logged(real_server: Server) -> None:
    raw_request(real_server, b"GARBAGE\r\n\r\n")  # gunicorn logs "Invalid request from ip="
    requests.get(f"{real_server.url}/health", timeout=10)
    time.sleep(0.3)
    log = real_server.log()
    assert '"GET /health" 200' in log and "Invalid request" in log
    lines = [line for line in log.splitlines() if "Listening at" not in line]
    assert not [line for line in lines if "127.0.0.1" in line or "ip=" in line]


@pytest.mark.integration  # runs gunicorn, which must refuse to start
def test_a_public_bind_without_credentials_is_refused(tmp_path: Path) -> None:
    for env in (
        {"HOST": "0.0.0.0"},
        {"GUNICORN_CMD_ARGS": f"--bind 0.0.0.0:{free_port()}"},  # past the settings
    ):
        result = run_server_expecting_failure(tmp_path, **env)
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.stderr[-2000:]
        assert "bound to 0.0.0.0 with no credentials" in errors[0]
        assert "STROKE_AUTH=open" in errors[0]
