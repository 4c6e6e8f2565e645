"""Fixtures shared by the whole suite. Tests never write into the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import settings as hypothesis_settings

from tests.postgres_server import postgres_server  # noqa: F401  (a session fixture)
from tests.processes import no_new_processes, reap_all, reap_on_terminating_signals

# The browser fixture lives in its own module, shared by every browser test.
pytest_plugins = ("tests.browser",)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Safety nets so no test writes into the repository by accident: any app started without
# an explicit prediction-log path, and hypothesis' example database, use a scratch folder.
_SCRATCH = tempfile.mkdtemp(prefix="stroke-tests-")
os.environ.setdefault("STROKE_MONITOR_DB", os.path.join(_SCRATCH, "predictions.sqlite"))
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(_SCRATCH, "hypothesis"))


# A terminating signal (CI cancelling the job, `kill`, a closed terminal) skips atexit and every
# fixture teardown: the servers the tests started are stopped first.
reap_on_terminating_signals()

# `make check` (the edit loop) runs hypothesis under this profile, a tenth of its default
# examples; tests that ask for more examples scale with it (tests/app/test_validation_fast_path.py).
hypothesis_settings.register_profile("check", max_examples=10)

BRAIN_CSV = REPO_ROOT / "data" / "raw" / "brain.csv"
HEALTHCARE_CSV = REPO_ROOT / "data" / "raw" / "healthcare-dataset-stroke-data.csv"


def copy_tracked_files(root: Path) -> None:
    """Copy the repository's tracked and unignored files (what a fresh clone has) to root."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, names.split("\0")):
        if (REPO_ROOT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, root / name)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def brain_raw_text() -> str:
    return BRAIN_CSV.read_text()


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]
) -> Path:
    """Return the folder `name` that build(folder) filled, built once per `pytest` run.

    The xdist workers share it (their basetemps sit in one folder) through a file lock: the
    first to need it builds it, the others wait for it. A build that raised is retried by the
    next worker that asks. Whoever uses the folder treats it as read-only (copy it to change
    it), since tests on the other worker may be copying it."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    folder, done = shared / "built-once" / name, shared / "built-once" / f"{name}.done"
    folder.parent.mkdir(exist_ok=True)
    with FileLock(str(shared / "built-once" / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def pipeline_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone-like copy of the repository with the tiny-budget pipeline run and committed
    (tests/pipeline/conftest.py's make_workspace, with its own DVC remote), built once per
    `pytest` run. Read-only: tests take private copies of it with workspace_from_template,
    which costs a copy instead of a `dvc repro`."""
    from tests.pipeline.conftest import make_workspace

    def build(folder: Path) -> None:
        (folder / "repo").mkdir()
        make_workspace(folder / "repo", folder / "remote")

    return built_once(tmp_path_factory, "pipeline-template", build) / "repo"


@pytest.fixture(scope="session")
def brain_frame() -> pd.DataFrame:
    from stroke_risk.data.load import load_dataset

    return load_dataset(BRAIN_CSV)


# Fixtures that start a server or a browser, run the pipeline or need an external tool:
# a test using any of them is an integration test, left out of `make check`.
INTEGRATION_FIXTURES = frozenset(
    {
        "real_server",
        "server_factory",
        "page_server",
        "processes",
        "mlflow_url",
        "service",
        "tracking_stack",
        "object_store",
        "two_commit_repo",
        "browser",
        "prometheus_binaries",
        "nginx_binary",
        "workspace",
        "remote",
        "repo",
        "postgres_server",
        "pipeline_template",
    }
)


# Fixtures that set up a whole journey: a scratch repository with the pipeline run and committed
# (the template and what is built from it) or the shared tracking stack (PostgreSQL, MLflow,
# SeaweedFS). A test using one is a `scenario` (pyproject.toml), as is one marked so; `make test`
# leaves them out, `make test-scenarios` runs them (README "Tests").
SCENARIO_FIXTURES = frozenset({"pipeline_template", "two_commit_repo", "tracking_stack"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark integration tests (see above; every e2e test is one) and order the files.

    `--dist loadfile` keeps each file on one worker, so its module fixtures are built once and
    tests that build on each other's state (tests/release/test_release_e2e.py) stay in order.
    (`--dist loadgroup` with xdist_group marks does not group under this pytest: the marks
    never reach the nodeids its scheduler reads, and a file's tests were spread over both
    workers.) Session fixtures are built once per worker that needs them."""
    groups: dict[pytest.Item, str] = {}
    for item in items:
        fixtures = set(item.fixturenames) if isinstance(item, pytest.Function) else set()
        if SCENARIO_FIXTURES & fixtures:
            item.add_marker(pytest.mark.scenario)
        if item.get_closest_marker("e2e") or INTEGRATION_FIXTURES & fixtures:
            item.add_marker(pytest.mark.integration)
        groups[item] = item.path.relative_to(REPO_ROOT).as_posix()
    # xdist hands files out in this order: files with an end-to-end test first, then
    # those with an integration test, so the long ones start early and the many short unit
    # files fill in at the end, not the reverse.
    end_to_end = {groups[item] for item in items if item.get_closest_marker("e2e")}
    integration = {groups[item] for item in items if item.get_closest_marker("integration")}
    items.sort(key=lambda item: (groups[item] not in end_to_end, groups[item] not in integration))


def pytest_configure(config: pytest.Config) -> None:
    """The stages, servers and tools the tests start read the bytecode cache make sets up
    (PYTHONPYCACHEPREFIX) but add nothing to it: they run scratch copies of the repository,
    whose bytecode would only pile up there. The test processes themselves keep writing it;
    so xdist's controller, whose environment its workers inherit, leaves it unset."""
    xdist_controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(
        config, "workerinput"
    )
    if not xdist_controller:
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"


@pytest.fixture(autouse=True)
def unit_tests_stay_in_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test not marked integration runs in this process: starting a program or a child
    process fails it, naming what it started (tests/processes.no_new_processes)."""
    if request.node.get_closest_marker("integration"):
        yield
        return
    # scikit-learn's thread count asks joblib for the physical cores, which runs lscpu once
    # per process: asked here, before the guard, it is not the test's doing.
    from joblib import cpu_count

    cpu_count(only_physical_cores=True)
    with no_new_processes(request.node.nodeid):
        yield


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Last resort: kill any server a fixture failed to stop (a failed start, an interrupt)."""
    reaped = reap_all()
    if reaped:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"tests/processes.py reaped leftover process groups: {reaped}")
