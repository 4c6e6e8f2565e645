"""The unit tier (`make check`) stays in process: a test not marked integration that starts a
program or a child process fails, naming itself and what it started (tests/conftest.py)."""

from __future__ import annotations

import multiprocessing
import subprocess

import pytest

from tests.processes import ProcessInUnitTest


def test_a_unit_test_starting_a_program_fails_naming_it(request: pytest.FixtureRequest) -> None:
    with pytest.raises(ProcessInUnitTest) as refused:
        subprocess.run(["git", "status"], check=False)
    assert str(refused.value).startswith(f"{request.node.nodeid} started git status: ")
    assert "@pytest.mark.integration" in str(refused.value)


@pytest.mark.parametrize("method", ["spawn", "fork", "forkserver"])
def test_a_unit_test_starting_a_child_process_fails(method: str) -> None:
    # joblib's process pools start theirs the same way (multiprocessing's BaseProcess.start).
    with pytest.raises(ProcessInUnitTest, match="started a child process running <built-in"):
        multiprocessing.get_context(method).Process(target=print).start()


@pytest.mark.integration
def test_an_integration_test_may_start_programs() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0
