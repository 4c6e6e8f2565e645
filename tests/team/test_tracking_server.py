"""A shared MLflow tracking server on a real PostgreSQL, started as `make tracking-server` does.

The pipeline's evaluate stage (which logs the model revision) runs with MLFLOW_TRACKING_URI
pointing at the server; the registered model is then loaded back through the server. Bad
credentials and an unreachable database end in one line that names them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stroke_risk.ports import free_port
from stroke_risk.tracking.server import (
    database_url,
    password_from_pgpass,
    pgpass_line,
)
from tests.conftest import REPO_ROOT
from tests.team.conftest import ObjectStore, TrackingStack, command_env, copy_repo, run

LOAD_BACK = """
import json, sys
import joblib, mlflow, pandas as pd
from stroke_risk.models.pyfunc import predict_frame
from stroke_risk.data.schema import EXAMPLE_RECORD
client = mlflow.MlflowClient()
version = client.get_model_version_by_alias("stroke-risk", "candidate")
run = client.get_run(version.run_id)
model = mlflow.pyfunc.load_model("models:/stroke-risk@candidate")
frame = pd.DataFrame([dict(EXAMPLE_RECORD)])
served = model.predict(frame)
metadata = json.load(open("models/model_metadata.json"))
local = predict_frame(joblib.load("models/model.joblib"), metadata["decision_threshold"], frame)
print(json.dumps({
    "version": version.version,
    "artifact_uri": run.info.artifact_uri,
    "test_recall": run.data.metrics.get("test_recall", run.data.metrics.get("test.recall")),
    "served": served.to_dict(orient="records"),
    "local": local.to_dict(orient="records"),
}))
"""


def test_pgpass_lines_round_trip_passwords_with_separators() -> None:
    for password in ("plain", "with:colon", "back\\slash:and:colon"):
        assert password_from_pgpass(pgpass_line("stroke", password), "stroke") == password
    assert password_from_pgpass(pgpass_line("other", "x"), "stroke") is None
    url = database_url(user="stroke", host="db", port=5432, database="mlflow")
    assert url == "postgresql+psycopg://stroke@db:5432/mlflow"


def query(stack: TrackingStack, database: str, sql: str) -> list[tuple]:
    import psycopg

    from stroke_risk.tracking.server import password_from_pgpass

    password = password_from_pgpass(stack.pgpass.read_text(), "stroke")
    with psycopg.connect(
        host="127.0.0.1", port=stack.pg_port, dbname=database, user="stroke", password=password
    ) as connection:
        return list(connection.execute(sql))


@pytest.mark.e2e
def test_pipeline_logs_to_the_shared_server_and_the_model_loads_back(
    tracking_stack: TrackingStack, object_store: ObjectStore, two_commit_repo: Path, tmp_path: Path
) -> None:
    repo = copy_repo(two_commit_repo, tmp_path / "repo")
    local_store = repo / "mlflow.db"  # the scratch repo's own runs, from its `dvc repro`
    before = local_store.read_bytes() if local_store.exists() else None
    env = tracking_stack.client_env(MLFLOW_TRACKING_URI=tracking_stack.url)
    result = run(["dvc", "repro", "--force", "--single-item", "evaluate"], repo, env=env)
    assert tracking_stack.url.split("//")[1] in result.stdout + result.stderr
    after = local_store.read_bytes() if local_store.exists() else None
    assert after == before, "logged to the local SQLite store instead of the server"

    loaded = json.loads(run([sys.executable, "-c", LOAD_BACK], repo, env=env).stdout)
    assert loaded["served"] == loaded["local"]
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert loaded["test_recall"] == pytest.approx(metrics["test"]["recall"])
    # Artifacts go through the server to the object store (the client holds no storage
    # key: client_env has none), runs into PostgreSQL.
    assert loaded["artifact_uri"].startswith("mlflow-artifacts:")
    assert "AWS_SECRET_ACCESS_KEY" not in env
    stored = [key for key in object_store.keys("mlflow/") if key.endswith("/model.joblib")]
    assert stored, "no model artifact in the object store behind --artifacts"
    assert not (tracking_stack.state_dir / "artifacts").exists()
    aliases = query(
        tracking_stack, "mlflow", "SELECT name, alias, version FROM registered_model_aliases"
    )
    assert ("stroke-risk", "candidate", int(loaded["version"])) in aliases
    assert query(tracking_stack, "mlflow", "SELECT count(*) FROM runs")[0][0] >= 1


@pytest.mark.e2e
def test_no_password_in_output_logs_or_urls(
    tracking_stack: TrackingStack, object_store: ObjectStore
) -> None:
    password = password_from_pgpass(tracking_stack.pgpass.read_text(), "stroke")
    assert password and len(password) >= 20
    assert oct(tracking_stack.pgpass.stat().st_mode & 0o777) == "0o600"
    output = tracking_stack.output.read_text()
    assert tracking_stack.url in output and "postgresql+psycopg://stroke@" in output
    admin = tracking_stack.admin_password
    assert len(admin) >= 20
    assert oct((tracking_stack.state_dir / "mlflow-admin-password").stat().st_mode & 0o777) == (
        "0o600"
    )
    assert "basic auth: user admin, password from" in output
    for text in (
        output,
        (tracking_stack.state_dir / "mlflow-server.log").read_text(),
        (tracking_stack.state_dir / "basic_auth.ini").read_text(),
    ):
        assert password not in text and admin not in text
        assert object_store.credentials.secret_access_key not in text


SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def http_status(url: str, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.e2e
def test_the_server_answers_only_signed_in_users(tracking_stack: TrackingStack) -> None:
    url = tracking_stack.url + SEARCH
    assert http_status(url) == 401
    assert http_status(url, "admin", "not-the-password") == 401
    assert http_status(url, "admin", tracking_stack.admin_password) == 200
    # Moving an alias (what a release does) is refused anonymously too.
    alias = tracking_stack.url + "/api/2.0/mlflow/registered-models/alias"
    request = urllib.request.Request(
        alias,
        data=json.dumps({"name": "stroke-risk", "alias": "production", "version": "1"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    # The health probe stays open (load balancers and check_tracking_uri use it).
    assert http_status(tracking_stack.url + "/health") == 200


@pytest.mark.integration
def test_a_non_loopback_host_without_auth_is_one_line() -> None:
    result = tracking_server_cli("--host", "0.0.0.0", "--state-dir", "/nonexistent/state")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "tracking-server: --host 0.0.0.0 without --auth would let anyone who reaches the port "
        "move @production; add --auth (MLflow basic-auth) or keep --host 127.0.0.1"
    )
    assert not Path("/nonexistent/state").exists()


def test_auth_runs_mlflow_basic_auth_app_with_a_secret_outside_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stroke_risk.tracking.server import auth_env, mlflow_server_command

    command = mlflow_server_command(
        backend_store_uri="postgresql+psycopg://stroke@db/mlflow",
        artifacts_destination="/a",
        host="0.0.0.0",
        port=5001,
        auth=True,
    )
    assert command[command.index("--app-name") + 1] == "basic-auth"
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    first = auth_env(tmp_path)
    assert auth_env(tmp_path) == first, "the generated password is kept"
    config = Path(first["MLFLOW_AUTH_CONFIG_PATH"]).read_text()
    assert first["MLFLOW_AUTH_ADMIN_PASSWORD"] not in config
    assert f"database_uri = sqlite:///{tmp_path / 'basic_auth.db'}" in config
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "from-the-environment")
    assert auth_env(tmp_path)["MLFLOW_AUTH_ADMIN_PASSWORD"] == "from-the-environment"


def tracking_server_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = command_env(**env)
    return subprocess.run(
        [sys.executable, "-m", "stroke_risk.commands.tracking_server", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


@pytest.mark.e2e
def test_wrong_password_is_one_line_that_names_it(
    tracking_stack: TrackingStack, tmp_path: Path
) -> None:
    result = tracking_server_cli(
        "--backend-store-uri",
        tracking_stack.database_url("mlflow"),
        "--state-dir",
        str(tmp_path),
        "--port",
        str(free_port()),
        PGPASSWORD="not-the-password",
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "password authentication failed" in line and "PGPASSWORD" in line
    assert "not-the-password" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.e2e
def test_unreachable_database_is_one_line_that_names_it(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql+psycopg://stroke@127.0.0.1:{port}/mlflow"
    result = tracking_server_cli(
        "--backend-store-uri", url, "--state-dir", str(tmp_path), PGPASSWORD="x"
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert f"127.0.0.1:{port}/mlflow" in line and "is the server running" in line


@pytest.mark.integration
def test_a_password_in_the_url_is_refused(tmp_path: Path) -> None:
    url = "postgresql+psycopg://stroke:secret@127.0.0.1:5432/mlflow"
    result = tracking_server_cli("--backend-store-uri", url, "--state-dir", str(tmp_path))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "must not contain a password" in line and "secret" not in line


def test_an_unreachable_tracking_server_is_reported_in_seconds() -> None:
    import time

    from stroke_risk.tracking.server import TrackingServerError, check_tracking_uri

    port = free_port()
    start = time.monotonic()
    with pytest.raises(TrackingServerError) as raised:
        check_tracking_uri(f"http://user:secret@127.0.0.1:{port}")
    assert time.monotonic() - start < 10
    message = str(raised.value)
    assert f"http://127.0.0.1:{port}" in message and "refused" in message.lower()
    assert "secret" not in message and "\n" not in message
    check_tracking_uri("sqlite:///mlflow.db")  # not a server: nothing to check


@pytest.mark.e2e
def test_a_running_tracking_server_passes_the_check(tracking_stack: TrackingStack) -> None:
    from stroke_risk.tracking.server import check_tracking_uri

    check_tracking_uri(tracking_stack.url)


@pytest.mark.e2e
def test_a_second_start_on_the_same_state_refuses_and_leaves_the_first_running(
    tracking_stack: TrackingStack,
) -> None:
    from stroke_risk.tracking.server import check_tracking_uri

    result = tracking_server_cli(
        "--state-dir",
        str(tracking_stack.state_dir),
        "--pg-port",
        str(tracking_stack.pg_port),
        "--port",
        str(free_port()),
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "already running" in line
    check_tracking_uri(tracking_stack.url)
    assert query(tracking_stack, "mlflow", "SELECT 1") == [(1,)]


SERVE_UNTIL_STOPPED = """
import time
from stroke_risk.tracking.server import wait_for_stop_signal
print("serving", flush=True)
wait_for_stop_signal()
print("shutting down", flush=True)
time.sleep(1.5)  # what leaving the servers' `with` blocks takes
print("stopped", flush=True)
"""


def until_caught(pid: int, signum: int, timeout: float = 30) -> None:
    """Wait until the process has a handler for signum (its SigCgt mask in /proc)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(status.split("SigCgt:")[1].split()[0], 16)
        if caught & (1 << (signum - 1)):
            return
        time.sleep(0.02)
    pytest.fail(f"process {pid} installed no handler for signal {signum} in {timeout} s")


@pytest.mark.integration  # a child process installs the handler and gets the signals
@pytest.mark.parametrize("first", ["SIGTERM", "SIGINT"])
def test_a_second_signal_does_not_cut_the_shutdown_short(first: str) -> None:
    import signal

    server = subprocess.Popen(
        [sys.executable, "-c", SERVE_UNTIL_STOPPED],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == "serving\n"
        until_caught(server.pid, signal.SIGTERM)
        server.send_signal(getattr(signal, first))
        assert server.stdout.readline() == "shutting down\n"
        server.send_signal(signal.SIGTERM)
        server.send_signal(signal.SIGINT)
        rest, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert (rest, server.returncode) == ("stopped\n", 0)
