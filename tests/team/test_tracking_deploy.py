"""Static checks of deploy/tracking (no Docker engine here): the compose services, the image
pins and the flags agree with the project and with the `mlflow server` that is installed."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from stroke_risk.tracking.server import DATABASES, DEFAULT_DB_USER
from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy" / "tracking"
PASSWORD_FROM_ENV = re.compile(r"^\$\{PGPASSWORD:\?[^}]+\}$")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_passwords_come_only_from_the_environment(services: dict[str, Any]) -> None:
    secrets = {
        f"{name}.{key}": value
        for name, service in services.items()
        for key, value in service.get("environment", {}).items()
        if "PASSWORD" in key
    }
    assert set(secrets) == {
        "postgres.POSTGRES_PASSWORD",
        "mlflow.PGPASSWORD",
        "mlflow.MLFLOW_AUTH_ADMIN_PASSWORD",
    }
    for key, value in secrets.items():
        variable = key.split(".")[1] if "MLFLOW" in key else "PGPASSWORD"
        assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", value), f"{key}: {value}"
    assert PASSWORD_FROM_ENV.match(services["mlflow"]["environment"]["PGPASSWORD"])
    key = services["mlflow"]["environment"]["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert key.startswith("${MLFLOW_FLASK_SERVER_SECRET_KEY:?")
    assert "password" not in (DEPLOY / "basic_auth.ini").read_text().split("[mlflow]")[1].lower()
    for text in (DEPLOY / "docker-compose.yml").read_text(), (DEPLOY / "Dockerfile").read_text():
        assert not re.search(r"postgres(ql)?(\+\w+)?://[^@\s/]*:[^@\s/]*@", text)


def test_mlflow_uses_the_postgres_service_and_its_databases(services: dict[str, Any]) -> None:
    command = services["mlflow"]["command"]
    backend = make_url(option(command, "--backend-store-uri"))
    assert backend.drivername == "postgresql+psycopg" and backend.password is None
    assert (backend.host, backend.port) == ("postgres", 5432)
    postgres = services["postgres"]["environment"]
    assert backend.username == postgres["POSTGRES_USER"] == DEFAULT_DB_USER
    created = {postgres["POSTGRES_DB"]} | {
        name
        for sql in (DEPLOY / "initdb").glob("*.sql")
        for name in re.findall(r"CREATE DATABASE (\w+)", sql.read_text())
    }
    assert created == set(DATABASES)
    assert backend.database in created
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    # Artifacts: the object store (test_mlflow_artifacts_go_to_the_internal_object_store...).


@pytest.mark.integration
def test_every_server_flag_exists_in_the_installed_mlflow(services: dict[str, Any]) -> None:
    command = services["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"]
    shown = subprocess.run(
        [sys.executable, "-m", "mlflow", "server", "--help"], capture_output=True, text=True
    ).stdout
    for flag in (word for word in command if word.startswith("--")):
        assert re.search(rf"\s{flag}[\s,]", shown), f"mlflow server has no {flag}"


def test_image_pins_match_the_lock_and_run_unprivileged() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    lock = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for package in ("mlflow", "psycopg"):
        pinned = re.search(rf'"{package}(\[\w+\])?==([^"]+)"', dockerfile)
        assert pinned and pinned.group(2) == lock[package].strip(), package
    project_base = re.search(r"^FROM (\S+)", (REPO_ROOT / "Dockerfile").read_text(), re.M)
    assert re.search(r"^FROM (\S+)", dockerfile, re.M).group(1) == project_base.group(1)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in {"root", "0"}
    assert "/health" in dockerfile


def test_only_the_tls_proxy_is_published(services: dict[str, Any]) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert compose["networks"]["internal"]["internal"] is True
    # PostgreSQL and MLflow only on the internal network; the proxy bridges the two.
    assert services["postgres"]["networks"] == ["internal"]
    assert services["mlflow"]["networks"] == ["internal"]
    assert services["seaweedfs"]["networks"] == ["internal"]
    assert set(services["proxy"]["networks"]) == {"edge", "internal"}
    (port,) = services["proxy"]["ports"]
    listen = re.search(r"listen (\d+) ssl;", (DEPLOY / "nginx.conf").read_text())
    assert listen and str(port).endswith(f":{listen.group(1)}")
    upstream = re.search(r"proxy_pass http://(\w+):(\d+);", (DEPLOY / "nginx.conf").read_text())
    assert upstream and upstream.group(1) == "mlflow"
    assert option(services["mlflow"]["command"], "--port") == upstream.group(2)


def test_mlflow_runs_its_basic_auth_app_with_the_committed_config(
    services: dict[str, Any],
) -> None:
    mlflow = services["mlflow"]
    assert option(mlflow["command"], "--app-name") == "basic-auth"
    config_path = mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in mlflow["volumes"]}
    assert (DEPLOY / mounts[config_path]).resolve() == (DEPLOY / "basic_auth.ini").resolve()
    import configparser

    config = configparser.ConfigParser()
    config.read(DEPLOY / "basic_auth.ini")
    database = config["mlflow"]["database_uri"]
    # The user store is on a named volume, kept across restarts.
    assert database.startswith("sqlite:////mlauth/") and mounts["/mlauth"] == "mlflow-auth"
    assert "flask-wtf==" in (DEPLOY / "Dockerfile").read_text()


def test_mlflow_artifacts_go_to_the_internal_object_store_with_keys_from_the_environment(
    services: dict[str, Any],
) -> None:
    mlflow, store = services["mlflow"], services["seaweedfs"]
    destination = option(mlflow["command"], "--artifacts-destination")
    bucket = destination.removeprefix("s3://").split("/")[0]
    assert destination.startswith("s3://")
    (script,) = store["command"]
    assert f"-bucket={bucket}" in script and "-s3.config=" in script
    port = re.search(r"-s3\.port=(\d+)", script).group(1)
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == f"http://seaweedfs:{port}"
    assert store["expose"] == [port] and "ports" not in store
    for service in (mlflow, store):
        for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            value = service["environment"][variable]
            assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", value), value
    # The keys reach the identity file only at start (compose's $$ is the container's $),
    # and the file is private to the server.
    assert '"$$AWS_SECRET_ACCESS_KEY"' in script and script.startswith("umask 077")
