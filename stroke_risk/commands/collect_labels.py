"""`make collect-labels`: the service's labelled predictions into the DVC-tracked outcome set.

The library it calls: stroke_risk.updating.collect.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from stroke_risk.io import load_params
from stroke_risk.updating.collect import (
    OUTCOMES_DIR,
    collect,
    collect_rows,
    set_push,
)
from stroke_risk.updating.postgres_source import (
    describe_source,
    read_labelled_predictions_from_database,
)
from stroke_risk.updating.settings import updating_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db",
        type=Path,
        default=Path(os.environ.get("STROKE_MONITOR_DB", "var/monitoring/predictions.sqlite")),
        help="the service's prediction log (STROKE_MONITOR_DB)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("STROKE_MONITOR_DATABASE_URL") or None,
        help="the prediction log on PostgreSQL (STROKE_MONITOR_DATABASE_URL); overrides --db",
    )
    parser.add_argument("--out", type=Path, default=OUTCOMES_DIR)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--allow-push",
        action="store_true",
        help="let dvc push copy the labels to the remote (only one approved for patient data)",
    )
    parser.add_argument("--no-dvc", action="store_true", help="write the folder, skip dvc add")
    args = parser.parse_args(argv)
    retention_days = updating_params(load_params(args.params)).outcome_retention_days
    try:
        if args.database_url:
            document = collect_rows(
                read_labelled_predictions_from_database(args.database_url),
                describe_source(args.database_url),
                args.out,
                retention_days=retention_days,
                now=time.time(),
            )
        else:
            document = collect(args.db, args.out, retention_days=retention_days, now=time.time())
    except (ValueError, sqlite3.Error, psycopg.Error) as error:
        print(f"collect-labels failed: {error}", file=sys.stderr)
        return 1
    print(
        f"{document['labels']} labelled predictions ({document['events']} events) in {args.out}"
        f" from {document['source']}"
    )
    if args.no_dvc:
        return 0
    dvc_file = args.out.with_name(args.out.name + ".dvc")
    if not document["labels"] and not dvc_file.exists():
        print(f"no labels: {args.out} stays the empty set git tracks")
        return 0
    # Labels never go into git: stop tracking the shipped empty set there, then track with DVC.
    subprocess.run(
        ["git", "rm", "-r", "-f", "--cached", "--quiet", "--ignore-unmatch", str(args.out)],
        check=True,
    )
    subprocess.run(["dvc", "add", "--quiet", str(args.out)], check=True)
    set_push(dvc_file, args.allow_push)
    print(f"tracked by {dvc_file} (push: {'allowed' if args.allow_push else 'false'}); commit it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
