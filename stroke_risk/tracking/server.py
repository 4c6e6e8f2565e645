"""A shared MLflow tracking server on PostgreSQL, and the local PostgreSQL it can run on.

    make tracking-server   # = python -m stroke_risk.commands.tracking_server

starts (and on first use creates) a PostgreSQL cluster in `var/tracking/postgres` with two
databases, `mlflow` (MLflow's backend store) and `optuna` (shared tuning studies), then
`mlflow server` with artifacts in `var/tracking/artifacts`, in the foreground until Ctrl-C.
With `--backend-store-uri postgresql+psycopg://user@host:port/db` it runs only the MLflow
server, on a team's existing PostgreSQL. With `--artifacts s3://bucket/path` the artifacts go
to S3-compatible object storage (the endpoint from MLFLOW_S3_ENDPOINT_URL when it is not AWS,
the key pair from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; stroke_risk/tracking/object_store.py),
still served through this server: clients need no storage credentials.

Credentials never appear in URLs, logs or committed files: the password comes from
`PGPASSWORD`, else from the libpq password file `var/tracking/pgpass` (git-ignored, mode
600, created with a random password on first use). Clients on other machines use the same
libpq mechanisms (`PGPASSWORD` or `PGPASSFILE`), e.g. an Optuna worker with
`tune.storage=postgresql+psycopg://stroke@HOST:5433/optuna`.

Bound to anything but loopback (`--host 0.0.0.0`), anyone who reaches the port could point
`@production` at a model of theirs, so the server refuses to start without `--auth`: MLflow's
own `basic-auth` app (users and permissions in `var/tracking/basic_auth.db`). The admin
password comes from MLFLOW_AUTH_ADMIN_PASSWORD, else from `var/tracking/mlflow-admin-password`
(mode 600, random on first use); clients send MLFLOW_TRACKING_USERNAME/PASSWORD. This
server speaks plain HTTP: a team server goes behind TLS (deploy/tracking has an nginx for it).

Everything that can fail for a user (PostgreSQL not installed, database unreachable, wrong
password, port taken) ends in one line naming what and how to fix it, exit status 1.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = Path("var/tracking")
DEFAULT_DB_USER = "stroke"
DATABASES = ("mlflow", "optuna")
# initdb/postgres refuse to run as root; as root the cluster belongs to Debian's user.
POSTGRES_OS_USER = "postgres"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ADMIN_USER = "admin"
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
ADMIN_PASSWORD_FILE = "mlflow-admin-password"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
DRIVER = "postgresql+psycopg"


class TrackingServerError(Exception):
    """What went wrong and how to fix it, in one line (never a password)."""


# --- pure helpers ---------------------------------------------------------------------------


def database_url(*, user: str, host: str, port: int, database: str, driver: str = DRIVER) -> str:
    """A SQLAlchemy URL without password: libpq takes it from PGPASSWORD or PGPASSFILE."""
    return f"{driver}://{user}@{host}:{port}/{database}"


def pgpass_line(user: str, password: str) -> str:
    """A libpq password-file line valid for any host, port and database of this user."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:{user}:{escaped}\n"


def password_from_pgpass(text: str, user: str) -> str | None:
    """The password of the first `*:*:*:user:password` line of a libpq password file."""
    for line in text.splitlines():
        fields: list[str] = []
        current, escaped = "", False
        for char in line:
            if escaped:
                current, escaped = current + char, False
            elif char == "\\":
                escaped = True
            elif char == ":" and len(fields) < 4:
                fields.append(current)
                current = ""
            else:
                current += char
        fields.append(current)
        if len(fields) == 5 and fields[3] in (user, "*"):
            return fields[4]
    return None


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (drivers add hints on more lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


# --- credentials ----------------------------------------------------------------------------


def database_password(pgpass: Path, user: str, *, create: bool) -> str:
    """PGPASSWORD, else the password-file entry for `user` (created when asked and missing)."""
    from_env = os.environ.get("PGPASSWORD")
    if from_env:
        return from_env
    if pgpass.is_file():
        found = password_from_pgpass(pgpass.read_text(), user)
        if found:
            return found
        raise TrackingServerError(f"{pgpass} has no entry for user '{user}': add one or delete it")
    if not create:
        raise TrackingServerError(f"no password: set PGPASSWORD or create {pgpass}")
    password = secrets.token_urlsafe(24)
    pgpass.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(pgpass, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w") as file:
        file.write(pgpass_line(user, password))
    return password


def check_database(url: str, password: str, timeout: int = 5) -> None:
    """Connect once; TrackingServerError names host, database, user and the reason."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    where = (
        f"PostgreSQL {parsed.host}:{parsed.port or 5432}/{parsed.database} as '{parsed.username}'"
    )
    try:
        with psycopg.connect(
            host=parsed.host,
            port=parsed.port or 5432,
            dbname=parsed.database,
            user=parsed.username,
            password=parsed.password or password,
            connect_timeout=timeout,
        ):
            pass
    except psycopg.Error as error:
        reason = first_line(error)
        if "password authentication failed" in reason:
            hint = "wrong password: fix PGPASSWORD or the pgpass file"
        elif "does not exist" in reason:
            hint = "create the database or user first"
        else:
            hint = "is the server running and the host/port right?"
        raise TrackingServerError(f"cannot connect to {where}: {reason} ({hint})") from None


def init_optuna_schema(url: str, password: str) -> None:
    """Create Optuna's tables once, before any worker: workers that start together on an
    empty database race to create them and fail (optuna/optuna#1092)."""
    import optuna

    optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"password": password}})


# --- a local PostgreSQL cluster -------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """Newest /usr/lib/postgresql/<version>/bin holding initdb (Debian's layout)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise TrackingServerError(
            "PostgreSQL server is not installed: run `make system-deps` "
            "(or apt-get install postgresql)"
        )
    return found[-1].parent


def _as_cluster_owner(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", POSTGRES_OS_USER, "--", *command]


def _give_to_cluster_owner(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, POSTGRES_OS_USER, POSTGRES_OS_USER)


def let_cluster_owner_traverse(data_dir: Path) -> list[Path]:
    """As root, let the cluster's OS user pass through every folder above `data_dir`.

    The service creates `var/` 0700 for the prediction log (patient data), and the cluster
    (run as Debian's postgres user) must walk through it to reach its own folder. Only the
    search bit is added (--x for others): a folder's listing stays private, and the files in
    it keep their own modes (the prediction log is 0600). Returns the folders changed.
    """
    if os.geteuid() != 0:
        return []
    changed = []
    for folder in reversed(data_dir.resolve().parents):
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)
            changed.append(folder)
    return changed


@dataclass
class PostgresCluster:
    """A PostgreSQL cluster in `data_dir` on 127.0.0.1:`port` (password authentication)."""

    data_dir: Path
    port: int
    user: str = DEFAULT_DB_USER
    listen: str = "127.0.0.1"

    @property
    def host(self) -> str:
        return "127.0.0.1" if self.listen in ("127.0.0.1", "*", "0.0.0.0") else self.listen

    def url(self, database: str, driver: str = DRIVER) -> str:
        return database_url(
            user=self.user, host=self.host, port=self.port, database=database, driver=driver
        )

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def init(self, password: str) -> None:
        """initdb with `user` as superuser and scram-sha-256 for every connection."""
        bin_dir = postgres_bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The cluster's owner must reach its folder (the folder itself stays 0700).
        let_cluster_owner_traverse(self.data_dir)
        self.data_dir.chmod(0o700)
        _give_to_cluster_owner(self.data_dir)
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        _give_to_cluster_owner(pwfile)
        try:
            self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "--username",
                    self.user,
                    "--pwfile",
                    str(pwfile),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--no-instructions",
                ],
                "initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def running(self) -> bool:
        status = subprocess.run(
            _as_cluster_owner(
                [str(postgres_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "status"]
            ),
            capture_output=True,
            timeout=30,
        )
        return status.returncode == 0

    def start(self, timeout: float = 30) -> None:
        let_cluster_owner_traverse(self.data_dir)
        if self.running():
            raise TrackingServerError(
                f"PostgreSQL in {self.data_dir} is already running (another "
                "`make tracking-server`?): use that one or stop it first"
            )
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses={self.listen}"
        log = self.data_dir / "server.log"
        self._run(
            [
                str(postgres_bin_dir() / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(log),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            f"pg_ctl start (see {log})",
        )

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                _as_cluster_owner(
                    [
                        str(postgres_bin_dir() / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ]
                ),
                capture_output=True,
                timeout=60,
            )

    def ensure_databases(self, password: str, names: tuple[str, ...] = DATABASES) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host,
            port=self.port,
            dbname="postgres",
            user=self.user,
            password=password,
            autocommit=True,
            connect_timeout=5,
        ) as connection:
            existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
            for name in names:
                if name not in existing:
                    connection.execute(f'CREATE DATABASE "{name}"')

    def _run(self, command: list[str], what: str) -> None:
        try:
            done = subprocess.run(
                _as_cluster_owner(command), capture_output=True, text=True, timeout=120
            )
        except FileNotFoundError as error:
            raise TrackingServerError(f"{what}: {error}") from None
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip().splitlines()
            reason = output[-1] if output else f"exit status {done.returncode}"
            raise TrackingServerError(f"{what} failed for {self.data_dir}: {reason}")


# --- the MLflow server ----------------------------------------------------------------------


def check_exposure(host: str, auth: bool) -> None:
    """Refuse a non-loopback address without authentication (one line)."""
    if host not in LOOPBACK_HOSTS and not auth:
        raise TrackingServerError(
            f"--host {host} without --auth would let anyone who reaches the port move "
            "@production; add --auth (MLflow basic-auth) or keep --host 127.0.0.1"
        )


def state_secret(state_dir: Path, variable: str, file_name: str) -> str:
    """The secret in environment variable `variable`, else in the state folder's file (mode
    600), created random on first use: never in the repository or a command line."""
    given = os.environ.get(variable)
    if given:
        return given
    path = state_dir / file_name
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return secret


def auth_config_text(database: Path) -> str:
    """MLflow's basic_auth.ini for this server: users in a SQLite file of the state folder,
    signed-in users may read by default; the admin password is never written here."""
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{database}\n"
        f"admin_username = {ADMIN_USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def auth_env(state_dir: Path) -> dict[str, str]:
    """The environment that makes `mlflow server --app-name basic-auth` use this state."""
    config = state_dir / "basic_auth.ini"
    config.write_text(auth_config_text(state_dir / "basic_auth.db"), encoding="utf-8")
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        ADMIN_PASSWORD_ENV: state_secret(state_dir, ADMIN_PASSWORD_ENV, ADMIN_PASSWORD_FILE),
        # Signs the auth app's CSRF tokens; the same for every worker of this server.
        SECRET_KEY_ENV: state_secret(state_dir, SECRET_KEY_ENV, "mlflow-flask-secret-key"),
    }


def mlflow_server_command(
    *,
    backend_store_uri: str,
    artifacts_destination: str,
    host: str,
    port: int,
    workers: int = 1,
    allowed_hosts: str | None = None,
    auth: bool = False,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts_destination,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    if auth:
        command += ["--app-name", "basic-auth"]
    return command


def server_env(password: str) -> dict[str, str]:
    """The server's environment: the password only here, telemetry and job runner off."""
    return {
        **os.environ,
        "PGPASSWORD": password,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def check_tracking_uri(uri: str, timeout: float = 5) -> None:
    """Ask an http(s) tracking server for /health once; TrackingServerError in one line.

    MLflow's own client retries an unreachable server with back-off for minutes before it
    fails; a client that checks first fails in seconds. Other URIs (sqlite, files) pass.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    try:
        with urllib.request.urlopen(f"{shown}{parts.path.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError as error:
        reason = f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = first_line(getattr(error, "reason", error))
    raise TrackingServerError(
        f"MLflow tracking server {shown} is not reachable ({reason}): start it "
        "(make tracking-server) or fix/unset MLFLOW_TRACKING_URI"
    )


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll <url>/health until OK; TrackingServerError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TrackingServerError(
                f"mlflow server exited with status {process.returncode} before answering"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TrackingServerError(f"mlflow server did not answer {url}/health in {timeout:.0f} s")


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM the process group (mlflow server forks gunicorn/uvicorn), then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_for_stop_signal() -> None:
    """Return on Ctrl-C (SIGINT) or SIGTERM, ignoring both from then on.

    A command that serves until stopped calls this inside its `with` blocks: their exits
    stop what it started, and a second signal (an impatient Ctrl-C, a supervisor's repeated
    SIGTERM) must not cut that shutdown short and leave a server running.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def mlflow_server(
    *,
    backend_store_uri: str,
    artifacts_destination: Path | str,
    password: str,
    host: str = "127.0.0.1",
    port: int,
    log_path: Path,
    allowed_hosts: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    auth: bool = False,
) -> Iterator[str]:
    """Check the database, run `mlflow server` until the block ends; yields its URL.

    `artifacts_destination` is a local folder (created) or an object-store URL (s3://...)."""
    check_database(backend_store_uri, password)
    if isinstance(artifacts_destination, Path):
        artifacts_destination.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        if probe.connect_ex((host if host != "0.0.0.0" else "127.0.0.1", port)) == 0:
            raise TrackingServerError(f"port {port} is taken: pass another --port")
    command = mlflow_server_command(
        backend_store_uri=backend_store_uri,
        artifacts_destination=str(artifacts_destination),
        host=host,
        port=port,
        allowed_hosts=allowed_hosts,
        auth=auth,
    )
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**server_env(password), **(extra_env or {})},
            start_new_session=True,
        )
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    try:
        wait_for_health(url, process)
        yield url
    finally:
        stop_process(process)
