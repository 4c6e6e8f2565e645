"""`make drift-report`: the offline HTML drift report of a CSV or a prediction-log window.

The library it calls: stroke_risk.reports.drift_report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from stroke_risk.data.load import DataValidationError
from stroke_risk.io import write_text
from stroke_risk.reports.drift_report import (
    DEFAULT_OUTPUT,
    DEFAULT_REFERENCE,
    DriftReportError,
    OfflineDriftReport,
    build_drift_report,
    describe_window,
    load_reference_profile,
    parse_time,
    read_log_window,
    records_from_csv,
    render_html,
    summary_text,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stroke_risk.commands.drift_report",
        description="Write an offline HTML drift report of a CSV file or a window of the"
        " prediction log against the training reference.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="CSV of the raw schema (stroke column optional)")
    source.add_argument("--log", type=Path, help="the service's prediction log (SQLite)")
    parser.add_argument("--since", help="with --log: from this time (24h, 7d, or ISO 8601)")
    parser.add_argument("--until", help="with --log: up to this time (default: now)")
    parser.add_argument("--model-version", help="with --log: only this model version's rows")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT)
    return parser


def run(args: argparse.Namespace, *, now: datetime) -> OfflineDriftReport:
    """Read the inputs, build the report and write the page; DriftReportError on bad input."""
    profile = load_reference_profile(args.reference)
    if args.data is not None:
        if args.since or args.until or args.model_version:
            raise DriftReportError("--since, --until and --model-version apply to --log only")
        try:
            records = records_from_csv(args.data)
        except FileNotFoundError:
            raise DriftReportError(f"{args.data}: no such file") from None
        except DataValidationError as error:
            raise DriftReportError(f"{args.data}: {error}") from None
        source, binned = str(args.data), False
    else:
        try:
            since = parse_time(args.since, now=now) if args.since else None
            until = parse_time(args.until, now=now) if args.until else None
        except ValueError as error:
            raise DriftReportError(str(error)) from None
        window = read_log_window(
            args.log, since=since, until=until, model_version=args.model_version
        )
        records, binned = window.records, window.binned
        source = (
            f"{args.log} {describe_window(since, until)}"
            f" (model version {', '.join(window.model_versions)})"
        )
    try:
        report = build_drift_report(profile, records, source=source, binned=binned)
    except ValueError as error:
        raise DriftReportError(f"{args.reference}: {error}") from None
    write_text(args.out, render_html(report))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args, now=datetime.now(UTC))
    except DriftReportError as error:
        print(f"drift-report: {error}", file=sys.stderr)
        return 2
    print(summary_text(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
