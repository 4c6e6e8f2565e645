"""Fixtures of the monitoring tests: reference profiles, Prometheus binaries, processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stroke_risk.ports import free_port
from tests.processes import start_process, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
# The raw data lives in the repository; CI also has a copy of shared/ beside the clone.
DATA_CANDIDATES = (
    REPO_ROOT / "data" / "raw" / "brain.csv",
    REPO_ROOT.parent / "shared" / "data" / "brain.csv",
)
APT_INSTALL_TIMEOUT_SECONDS = 600


def find_brain_csv() -> Path | None:
    return next((path for path in DATA_CANDIDATES if path.is_file()), None)


@pytest.fixture(scope="session")
def brain_csv() -> Path:
    path = find_brain_csv()
    if path is None:
        pytest.skip("brain.csv not found in data/raw/ or ../shared/data/")
    return path


@pytest.fixture(scope="session")
def training_frame(brain_csv: Path) -> Any:
    """The validated raw data set (features + stroke)."""
    from stroke_risk.data.load import load_dataset

    return load_dataset(brain_csv)


@pytest.fixture(scope="session")
def reference_profile(training_frame: Any) -> dict[str, Any]:
    """A real reference profile, built the way the featurize stage builds it."""
    from stroke_risk.data.features import build_reference_profile

    return build_reference_profile(training_frame, target="stroke", seed=0)


@pytest.fixture(scope="session")
def training_records(training_frame: Any) -> list[dict[str, Any]]:
    """The data set's rows as plain JSON-ready records of the ten fields."""
    from stroke_risk.data.schema import FEATURE_NAMES

    records = []
    for row in training_frame[list(FEATURE_NAMES)].to_dict("records"):
        records.append({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return records


def _apt_install_prometheus() -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("promtool is missing and apt-get is unavailable")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
    ):
        subprocess.run(
            command,
            check=True,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=APT_INSTALL_TIMEOUT_SECONDS,
        )


@pytest.fixture(scope="session")
def prometheus_binaries() -> dict[str, str]:
    """Paths of promtool and prometheus, installing Debian's package when missing."""
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        _apt_install_prometheus()
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    assert promtool and prometheus, "apt-get install prometheus did not provide the binaries"
    return {"promtool": promtool, "prometheus": prometheus}


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    """Poll check() until it returns True or timeout seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - the service may still be starting
            pass
        time.sleep(interval)
    return False


class ProcessGroup:
    """Processes started by a test, each leading its own process group, stopped at teardown."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(
        self, command: list[str], *, log_path: Path, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        process = start_process(command, log_path=log_path, **kwargs)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        # Signals each whole group: this reaches gunicorn's workers too.
        for process in reversed(self.processes):
            stop_process(process, timeout=10)


@pytest.fixture
def processes() -> Iterator[ProcessGroup]:
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def get_free_port() -> Callable[[], int]:
    return free_port


@pytest.fixture
def poll() -> Callable[..., bool]:
    return wait_until


@pytest.fixture(scope="session")
def nginx_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of an nginx binary: the installed one, or Debian's package unpacked (not
    installed, so no service starts) into a temporary directory."""
    installed = shutil.which("nginx")
    if installed:
        return installed
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("nginx is missing and apt-get/dpkg are unavailable")
    directory = tmp_path_factory.mktemp("nginx")
    download = subprocess.run(
        ["apt-get", "download", "nginx"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=APT_INSTALL_TIMEOUT_SECONDS,
    )
    if download.returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "download", "nginx"], cwd=directory, check=True, capture_output=True
        )
    (package,) = directory.glob("nginx_*.deb")
    subprocess.run(["dpkg", "-x", str(package), str(directory / "root")], check=True)
    binary = directory / "root" / "usr" / "sbin" / "nginx"
    assert binary.is_file(), "Debian's nginx package has no usr/sbin/nginx"
    return str(binary)
