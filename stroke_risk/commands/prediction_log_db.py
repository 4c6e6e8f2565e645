"""`setup` and `purge` of the prediction log on PostgreSQL, run by the database's owner role.

The library it calls: stroke_risk.monitoring.postgres_log.
"""

from __future__ import annotations

import argparse
import os
import sys

import psycopg

from stroke_risk.monitoring.postgres_log import (
    create_service_role,
    describe_url,
    purge,
    setup_schema,
)


def main(argv: list[str] | None = None) -> int:
    """`setup`: create the schema and the service role's grants; `purge`: delete and rewrite.

    Run as the owner role (URL without password: libpq reads PGPASSWORD or ~/.pgpass).
    The service role's password, when --create-role, comes from STROKE_MONITOR_SERVICE_PASSWORD.
    """
    parser = argparse.ArgumentParser(prog="python -m stroke_risk.commands.prediction_log_db")
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="create the schema and grant the service role")
    setup.add_argument("--owner-url", required=True, help="postgresql://OWNER@HOST:PORT/DB")
    setup.add_argument("--service-role", required=True)
    setup.add_argument(
        "--create-role",
        action="store_true",
        help="create the service role (password from STROKE_MONITOR_SERVICE_PASSWORD)",
    )
    wipe = commands.add_parser("purge", help="delete every prediction and rewrite the tables")
    wipe.add_argument("--owner-url", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "setup":
            if args.create_role:
                password = os.environ.get("STROKE_MONITOR_SERVICE_PASSWORD")
                if not password:
                    print(
                        "error: --create-role needs STROKE_MONITOR_SERVICE_PASSWORD",
                        file=sys.stderr,
                    )
                    return 2
                create_service_role(args.owner_url, args.service_role, password)
            setup_schema(args.owner_url, args.service_role)
            print(f"prediction_log schema ready; role '{args.service_role}' may use its rows")
        else:
            print(f"purged {purge(args.owner_url)} predictions")
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        where = describe_url(args.owner_url)
        print(f"error: PostgreSQL {where}: {type(error).__name__} {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
