"""tests/processes.py: servers started by tests stop with all their children, whatever happens.

Real processes: a shell that leaves children behind, and a small HTTP server whose first
answers are slower than a request's patience (what made a server fixture fail on a busy
machine and leave its gunicorn running).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stroke_risk.ports import free_port
from tests.processes import (
    descendants,
    group_members,
    start_process,
    stop_process,
    wait_until_ready,
)

pytestmark = pytest.mark.integration

# Answers /ready after `delay` seconds for the first `slow` requests, at once afterwards.
SLOW_SERVER = textwrap.dedent(
    """
    import sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    port, slow, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(1)
            if len(seen) <= slow:
                time.sleep(delay)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


def test_stopping_a_leader_also_stops_the_children_it_left(tmp_path: Path) -> None:
    # The shell exits on SIGTERM at once; its two sleeping children would outlive it.
    process = start_process(["sh", "-c", "sleep 300 & sleep 300 & wait"], log_path=tmp_path / "log")
    deadline = time.monotonic() + 10
    while len(group_members(process.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(process.pid)) == 3
    stop_process(process, timeout=5)
    assert group_members(process.pid) == []


def test_a_child_in_a_session_of_its_own_is_stopped_too(tmp_path: Path) -> None:
    # What the tracking server does with MLflow: a group signal would not reach it.
    process = start_process(
        ["sh", "-c", "setsid sleep 300 & sleep 300 & wait"], log_path=tmp_path / "log"
    )
    deadline = time.monotonic() + 10
    while len(descendants(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    family = descendants(process.pid)
    assert len(family) == 2
    stop_process(process, timeout=5)
    assert all(not Path(f"/proc/{pid}").exists() or _is_zombie(pid) for pid in family)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _stand_in_command(tmp_path: Path, then: str) -> list[str]:
    """A stand-in for a test run in its own interpreter (reaping in this one would also stop
    this session's shared servers): it starts a server through start_process, prints its
    pid, then runs `then`."""
    run = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from tests.processes import reap_all, reap_on_terminating_signals, start_process
        reap_on_terminating_signals()
        server = start_process(["sleep", "300"], log_path=Path({str(tmp_path / "log")!r}))
        print(server.pid, flush=True)
        """
    )
    return [sys.executable, "-c", run + then]


def _stand_in_run(tmp_path: Path, then: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _stand_in_command(tmp_path, then),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )


def _server_pid(runner: subprocess.Popen[str]) -> int:
    assert runner.stdout is not None
    server_pid = int(runner.stdout.readline())
    assert group_members(server_pid) == [server_pid]
    return server_pid


def test_the_reaper_kills_what_no_fixture_stopped(tmp_path: Path) -> None:
    # It reaps once told to: reaping at once raced this test's look at the server's group.
    runner = _stand_in_run(
        tmp_path, "sys.stdin.readline()\nprint(reap_all() == [server.pid], flush=True)"
    )
    server_pid = _server_pid(runner)
    assert runner.stdin is not None and runner.stdout is not None
    runner.stdin.write("reap\n")
    runner.stdin.flush()
    assert runner.stdout.readline().strip() == "True"
    assert runner.wait(timeout=10) == 0
    assert group_members(server_pid) == []


def test_a_run_that_ends_without_stopping_its_server_reaps_it_at_exit(tmp_path: Path) -> None:
    runner = _stand_in_run(tmp_path, "sys.exit(0)")
    assert runner.stdout is not None
    server_pid = int(runner.stdout.readline())  # already being reaped: its exit is at once
    assert runner.wait(timeout=10) == 0
    assert group_members(server_pid) == []


def test_a_killed_controller_has_its_workers_stop_their_servers(tmp_path: Path) -> None:
    # pytest-xdist: the controller is killed, the worker (its child) started the server.
    worker = _stand_in_command(tmp_path, "time.sleep(300)")
    controller_code = (
        "import subprocess, sys, time\n"
        "from tests.processes import reap_on_terminating_signals\n"
        "reap_on_terminating_signals()\n"
        f"subprocess.Popen({worker!r}, stdout=sys.stdout)\n"
        "time.sleep(300)\n"
    )
    controller = subprocess.Popen(
        [sys.executable, "-c", controller_code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    server_pid = _server_pid(controller)
    os.kill(controller.pid, signal.SIGTERM)
    assert controller.wait(timeout=10) == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while group_members(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(server_pid) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_killed_test_run_stops_its_servers_first(tmp_path: Path, signum: int) -> None:
    # What CI cancelling a run, or `kill`, does to the pytest process.
    runner = _stand_in_run(tmp_path, "time.sleep(300)")
    server_pid = _server_pid(runner)
    os.kill(runner.pid, signum)
    assert runner.wait(timeout=10) == -signum
    assert group_members(server_pid) == []


def test_readiness_polls_on_through_slow_answers(tmp_path: Path) -> None:
    port = free_port()
    # A first answer of 6 s: longer than one request waits (5 s).
    command = [sys.executable, "-c", SLOW_SERVER, str(port), "1", "6"]
    process = start_process(command, log_path=tmp_path / "log")
    try:
        seconds = wait_until_ready(f"http://127.0.0.1:{port}/ready", process, timeout=60)
        assert seconds > 5
    finally:
        stop_process(process)


def test_a_server_never_ready_is_an_error_naming_the_last_failure(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-c", SLOW_SERVER, str(port), "1000", "30"]
    process = start_process(command, log_path=tmp_path / "log")
    try:
        with pytest.raises(AssertionError, match="not ready after 3 s"):
            wait_until_ready(f"http://127.0.0.1:{port}/ready", process, timeout=3)
    finally:
        stop_process(process)
    assert group_members(process.pid) == []
