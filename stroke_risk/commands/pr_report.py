"""`make pr-report`: a branch's metrics and curves against a base revision, as Markdown.

The library it calls: stroke_risk.reports.pr_report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stroke_risk.reports.pr_report import ReportError, build_report, git


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--out", type=Path, default=Path("pr-report.md"))
    parser.add_argument(
        "--resamples", type=int, default=2000, help="paired bootstrap resamples of the test split"
    )
    args = parser.parse_args(argv)
    root = Path(git(Path.cwd(), "rev-parse", "--show-toplevel").stdout.strip() or Path.cwd())
    try:
        build_report(root, args.base, args.out.resolve(), n_resamples=args.resamples)
    except ReportError as error:
        print(f"pr-report: {error}", file=sys.stderr)
        return 2
    print(f"pr-report: wrote {args.out} and {args.out.parent / args.out.stem}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
