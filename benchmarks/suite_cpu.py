"""Where the test suite spends its CPU: per folder, per file and per test, and the budgets.

    python -m benchmarks.suite_cpu [pytest arguments]      e.g. -m "not integration"
    python -m benchmarks.suite_cpu tests/pipeline tests/team --top 20

Runs pytest in this process (no xdist: one worker, so every figure is this run's own) with a
plugin that charges each test its setup, call and teardown in CPU seconds: this process's
plus that of every child process it waited for (stages, dvc, gunicorn, tools). CPU seconds
barely move with the machine's load, unlike wall time, so a loaded shared machine still
tells which folders and fixtures cost most. A session fixture is charged to the first test
that uses it. Printed: collection CPU, CPU and wall per folder and per file, the slowest
tests, and the wall time W idle workers would need at best, (total CPU) / W + collection
(`--dist loadfile` cannot split a file, so the longest file is a floor too).
The budgets (issue 18): `make check` under 60 s and `make test`'s pytest under ~4.5 min on
an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest

CHECK_BUDGET_SECONDS = 60.0
TEST_BUDGET_SECONDS = 270.0


def cpu_seconds() -> float:
    """CPU seconds of this process and of the children it waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class CpuCharges:
    """A pytest plugin that records the CPU and wall seconds of each test's whole protocol."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        # From before pytest starts: loading conftest files and plugins is start-up cost too.
        self.started_cpu, self.collection_cpu = cpu_seconds(), 0.0

    def pytest_collection_finish(self) -> None:
        self.collection_cpu = cpu_seconds() - self.started_cpu

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        cpu, wall = cpu_seconds(), time.monotonic()
        yield
        self.cpu[item.nodeid] += cpu_seconds() - cpu
        self.wall[item.nodeid] += time.monotonic() - wall


def grouped(values: dict[str, float], depth: int) -> dict[str, float]:
    """Sum per-test values by the first `depth` parts of the test's path (2: tests/app)."""
    sums: dict[str, float] = defaultdict(float)
    for nodeid, value in values.items():
        path = nodeid.split("::")[0]
        sums["/".join(path.split("/")[:depth]) if depth else path] += value
    return sums


def print_report(charges: CpuCharges, top: int, workers: int) -> None:
    total = sum(charges.cpu.values())
    print(f"\nstart-up and collection: {charges.collection_cpu:.1f} CPU s")
    for title, depth, limit in (("folder", 2, None), ("file", 0, top)):
        cpu, wall = grouped(charges.cpu, depth), grouped(charges.wall, depth)
        print(f"\n{'CPU s':>8} {'wall s':>8}  {title}")
        for name in sorted(cpu, key=cpu.__getitem__, reverse=True)[:limit]:
            print(f"{cpu[name]:8.1f} {wall[name]:8.1f}  {name}")
    print(f"\n{'CPU s':>8} {'wall s':>8}  test (setup + call + teardown)")
    for nodeid in sorted(charges.cpu, key=charges.cpu.__getitem__, reverse=True)[:top]:
        print(f"{charges.cpu[nodeid]:8.1f} {charges.wall[nodeid]:8.1f}  {nodeid}")
    estimate = total / workers + charges.collection_cpu
    print(
        f"\ntests: {total:.1f} CPU s; on {workers} idle workers at best {estimate:.0f} s wall "
        f"(budgets: make check {CHECK_BUDGET_SECONDS:.0f} s, "
        f"make test's pytest {TEST_BUDGET_SECONDS:.0f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=30, help="files and tests listed")
    parser.add_argument("--workers", type=int, default=2, help="for the wall-time estimate")
    args, pytest_args = parser.parse_known_args(argv)
    charges = CpuCharges()
    status = pytest.main(["-p", "no:xdist", "-q", *pytest_args], plugins=[charges])
    print_report(charges, args.top, args.workers)
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
