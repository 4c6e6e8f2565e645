"""Servers and other long-running processes that tests start, and how they always stop.

Every process started through `start_process` leads its own session (so its own process
group): stopping it signals the whole group, which reaches gunicorn's workers, the
PostgreSQL and MLflow children of the tracking server, and anything else it spawned.
Each one is also recorded here, so the suite's last hook (`reap_all`, called from
tests/conftest.py at session finish and at interpreter exit) kills whatever a fixture
failed to stop: a failed start, an interrupted run (Ctrl-C) or a teardown that raised.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.process
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import requests

# Process groups started by this interpreter and not yet stopped (pid = pgid).
_STARTED: dict[int, subprocess.Popen[Any]] = {}


def start_process(
    command: list[str], *, log_path: Path, **popen_kwargs: Any
) -> subprocess.Popen[bytes]:
    """Start command in a new session with stdout+stderr to log_path; record it for the reaper."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen_kwargs
        )
    return track(process)


def track(process: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    """Record a process started elsewhere with start_new_session=True, for the reaper."""
    _STARTED[process.pid] = process
    return process


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _live_processes() -> dict[int, tuple[int, int]]:
    """Return pid -> (parent pid, process group) of every live (not zombie) process."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if state != "Z":
            table[int(stat.parent.name)] = (int(parent), int(group))
    return table


def group_members(pgid: int) -> list[int]:
    """Return the pids of the group's live processes (zombies, which hold nothing, aside)."""
    return sorted(pid for pid, (_, group) in _live_processes().items() if group == pgid)


def descendants(pid: int) -> list[int]:
    """Return the pids of pid's live descendants, including those in sessions of their own
    (the tracking server starts MLflow so): a group signal does not reach those."""
    children: dict[int, list[int]] = {}
    for child, (parent, _) in _live_processes().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return sorted(found)


def _stop_strays(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL 5 s later, to whichever of pids still run."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        live = set(pids) & set(_live_processes())
        for pid in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        deadline = time.monotonic() + 5
        while live and time.monotonic() < deadline:
            time.sleep(0.1)
            live &= set(_live_processes())
        if not live:
            return


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> int | None:
    """Stop the process and everything left in its group; return the leader's exit status.

    SIGTERM goes to the leader first, so it shuts down in order (gunicorn stops its workers,
    the tracking server its PostgreSQL); after timeout seconds the whole group gets SIGKILL.
    Whatever of the group outlives the leader then gets SIGTERM, and SIGKILL 5 s later, and
    so does any descendant that had left the group (a session of its own).
    """
    # Taken first: once the leader has gone, its orphans no longer name it as parent.
    family = descendants(process.pid) if process.poll() is None else []
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if group_members(process.pid):
            _signal_group(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while group_members(process.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            _signal_group(process.pid, signal.SIGKILL)
        _stop_strays(family)
    finally:
        _STARTED.pop(process.pid, None)
    return process.returncode


def reap_all() -> list[int]:
    """Kill every process group started here and not stopped yet; return their pids."""
    reaped = []
    for pid, process in list(_STARTED.items()):
        if process.poll() is not None and not group_members(pid):
            _STARTED.pop(pid, None)  # ended and its group is empty: nothing to reap
            continue
        family = descendants(pid)
        _signal_group(pid, signal.SIGKILL)
        for stray in family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(stray, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        _STARTED.pop(pid, None)
        reaped.append(pid)
    return reaped


atexit.register(reap_all)


def _reap_then_die(signum: int, frame: object) -> None:
    # Passed on to the direct children first: pytest-xdist's workers (which started the
    # servers and reap them in their own handler) share this process's group but are not
    # signalled with it when only this process is killed.
    for pid, (parent, _) in _live_processes().items():
        if parent == os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
    reap_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def reap_on_terminating_signals() -> None:
    """Make SIGTERM and SIGHUP, which skip atexit and fixture teardowns, reap first, then kill
    this process as the signal would have."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _reap_then_die)


def wait_until_ready(
    url: str,
    process: subprocess.Popen[bytes],
    *,
    timeout: float,
    describe: Callable[[], str] = lambda: "",
    ready: Callable[[requests.Response], bool] = lambda answer: answer.status_code == 200,
) -> float:
    """Poll url until `ready(answer)`; return the seconds it took.

    A refused connection, a reset or a slow answer (each request may take up to 5 s on a busy
    machine) means "not yet": polling goes on until the deadline. Raises AssertionError, with
    describe() (e.g. the server log) in the message, when the process exits or the deadline
    passes; the caller stops the process.
    """
    started = time.monotonic()
    deadline = started + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with status {process.returncode}:\n{describe()}")
        try:
            answer = requests.get(url, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if ready(answer):
                return time.monotonic() - started
            last_error = f"HTTP {answer.status_code}"
        except requests.RequestException as error:
            last_error = type(error).__name__
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready after {timeout} s ({last_error}):\n{describe()}")


class ProcessInUnitTest(AssertionError):
    """A test left in `make check`'s unit tier started a program or a child process."""


@contextlib.contextmanager
def no_new_processes(test: str) -> Iterator[None]:
    """Within: starting a program (subprocess) or a child process (multiprocessing, joblib's
    process pools) raises ProcessInUnitTest naming `test` and what it started.

    Unit tests run in the test's own process: that is what keeps `make check` within its
    minute and free of servers. A test that starts anything is an integration test."""

    def refuse(what: str) -> NoReturn:
        raise ProcessInUnitTest(
            f"{test} started {what}: a test that starts a program or a process is an "
            "integration test; mark it @pytest.mark.integration (make check leaves those out)"
        )

    def popen(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        refuse(" ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args))

    def start(self: multiprocessing.process.BaseProcess) -> None:
        refuse(f"a child process running {getattr(self, '_target', None)!r}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", popen)
        patch.setattr(multiprocessing.process.BaseProcess, "start", start)
        yield
