"""One real PostgreSQL for the whole test session, and a fresh database per test that asks.

Started with the tracking server's own code (stroke_risk.tracking.server.PostgresCluster:
initdb + pg_ctl on a free loopback port in a temporary folder, as Debian's postgres user
when the suite runs as root) and stopped at the session's end. Passwords live in a libpq
password file named by PGPASSFILE for the session, so URLs carry none and subprocesses
(gunicorn instances) authenticate like a deployed service.

Each ``new_prediction_log()`` creates a database with an owner role (the superuser here)
that runs the prediction log's setup, and connects the service as the least-privileged
role SERVICE_ROLE.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERVICE_ROLE = "stroke_service"


@dataclass
class PostgresServer:
    """The session's server: its superuser (the owner of every test database) and roles."""

    host: str
    port: int
    owner: str
    owner_password: str
    service_password: str
    databases: list[str] = field(default_factory=list)

    def url(self, database: str, user: str) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its name."""
        import psycopg

        name = f"log_{secrets.token_hex(6)}"
        with psycopg.connect(self.url("postgres", self.owner), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return name

    def new_prediction_log(self) -> tuple[str, str]:
        """A database set up for the prediction log; return (owner URL, service URL)."""
        from stroke_risk.monitoring.postgres_log import setup_schema

        database = self.new_database()
        owner_url = self.url(database, self.owner)
        setup_schema(owner_url, SERVICE_ROLE)
        return owner_url, self.url(database, SERVICE_ROLE)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL (skipped when the server is not installed).

    Its folder is made by tempfile, not tmp_path_factory: pytest deletes all but the newest
    three base folders of a user, so a concurrent pytest run would remove a live cluster.
    """
    from stroke_risk.monitoring.postgres_log import create_service_role
    from stroke_risk.ports import free_port
    from stroke_risk.tracking.server import (
        PostgresCluster,
        TrackingServerError,
        pgpass_line,
        postgres_bin_dir,
    )

    try:
        postgres_bin_dir()
    except TrackingServerError as missing:
        pytest.skip(str(missing))
    root = Path(tempfile.mkdtemp(prefix="stroke-postgres-"))
    cluster = PostgresCluster(data_dir=root / "data", port=free_port(), user="stroke_owner")
    server = PostgresServer(
        host=cluster.host,
        port=cluster.port,
        owner=cluster.user,
        owner_password=secrets.token_urlsafe(18),
        service_password=secrets.token_urlsafe(18),
    )
    pgpass = root / "pgpass"
    pgpass.write_text(
        pgpass_line(server.owner, server.owner_password)
        + pgpass_line(SERVICE_ROLE, server.service_password)
    )
    pgpass.chmod(0o600)
    previous = os.environ.get("PGPASSFILE")
    os.environ["PGPASSFILE"] = str(pgpass)
    cluster.init(server.owner_password)
    try:
        cluster.start()
        create_service_role(
            server.url("postgres", server.owner), SERVICE_ROLE, server.service_password
        )
        yield server
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = previous
        shutil.rmtree(root, ignore_errors=True)
