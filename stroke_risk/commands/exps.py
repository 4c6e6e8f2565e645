"""`make exps`: the experiments of recent commits under their baselines.

The library it calls: stroke_risk.reports.experiment_table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from stroke_risk.reports.experiment_table import DEFAULT_COMMITS, DEFAULT_WIDTH, render


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stroke_risk.commands.exps", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--commits", type=int, default=DEFAULT_COMMITS)
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    parser.add_argument("--repo", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    try:
        print(render(args.repo, args.commits, args.width))
    except subprocess.CalledProcessError as error:
        print(f"exps: {(error.stderr or str(error)).strip()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
