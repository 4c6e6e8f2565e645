"""`make compare`: experiments side by side, with CIs and paired tests against baselines.

The library it calls: stroke_risk.evaluation.comparison.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from stroke_risk.evaluation.comparison import (
    DEFAULT_COMMITS,
    ComparisonError,
    compare,
    default_runs,
    named_runs,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stroke_risk.commands.compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "sources",
        nargs="*",
        help="experiment names, git revisions or folders holding params.yaml and reports/; "
        "'workspace' for the working tree (default: the baselines of the last --commits "
        "commits, their experiments, and the workspace when it differs)",
    )
    parser.add_argument(
        "--reference", help="run to compare the others with (default: each one's baseline)"
    )
    parser.add_argument(
        "--commits",
        type=int,
        default=DEFAULT_COMMITS,
        help=f"how many recent commits' experiments to list (default {DEFAULT_COMMITS})",
    )
    parser.add_argument("--repo", default=".", type=Path)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    notes: list[str] = []
    try:
        if args.sources:
            runs = named_runs(args.repo, args.sources)
        else:
            runs, notes = default_runs(args.repo, args.commits)
    except (ComparisonError, subprocess.CalledProcessError) as error:
        message = getattr(error, "stderr", None) or str(error)
        print(f"compare: {message.strip()}", file=sys.stderr)
        return 2
    notes.append(
        f"Experiments of the last {args.commits} commits; older ones: `dvc exp list -A` "
        '(names and baselines), then `make compare EXPS="name ..."` or '
        "`make compare COMMITS=50`."
    )
    try:
        report = compare(
            runs, reference=args.reference, n_resamples=args.resamples, seed=args.seed, notes=notes
        )
    except ComparisonError as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    print(report)
    if args.output:
        from stroke_risk.io import write_text

        write_text(args.output, report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
