"""Prometheus/Alertmanager web configs (basic auth) for monitoring/docker-compose.yml.

    MONITORING_PASSWORD=... python -m monitoring.web_config        # writes monitoring/secrets/

Prometheus and Alertmanager answer only requests with this user and password (their API can
delete series or silence alerts). The password comes from the environment, never from the
repository; what is written is its bcrypt hash, in the git-ignored `monitoring/secrets/`
(web.yml for both servers, and the plain password in `password` for the clients inside the
stack: Prometheus sending alerts, Grafana querying; mode 600). `promtool check web-config`
validates web.yml (tests/monitoring/test_deploy_files.py runs it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import bcrypt
import yaml

USER = "monitoring"
PASSWORD_ENV = "MONITORING_PASSWORD"
SECRETS_DIR = Path(__file__).parent / "secrets"
# bcrypt's cost: Prometheus checks every request's password against the hash.
COST = 10


def web_config(user: str, password: str, *, cost: int = COST) -> dict:
    """The web config (exporter-toolkit format) allowing `user` with this password."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    return {"basic_auth_users": {user: hashed}}


def write_secrets(directory: Path, password: str, user: str = USER) -> list[Path]:
    """web.yml and password in `directory` (created 0700, files 0600); returns both paths."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("web.yml", yaml.safe_dump(web_config(user, password))),
        ("password", password),
    ):
        path = directory / name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.web_config", description=__doc__)
    parser.add_argument("--out", type=Path, default=SECRETS_DIR)
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV, "")
    if len(password) < 12:
        print(
            f"web_config: set {PASSWORD_ENV} to a password of at least 12 characters",
            file=sys.stderr,
        )
        return 1
    for path in write_secrets(args.out, password):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
