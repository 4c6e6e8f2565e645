"""`make exp`: `dvc exp run` with its -S overrides checked first.

The library it calls: stroke_risk.tracking.experiment_overrides.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from stroke_risk.tracking.experiment_overrides import check_overrides, set_params


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] != "run":
        print(
            "usage: python -m stroke_risk.commands.exp_run run [dvc exp run arguments]",
            file=sys.stderr,
        )
        return 2
    root = Path.cwd()
    problems = check_overrides(root, set_params(arguments[1:]))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    os.execv(dvc, [dvc, "exp", "run", *arguments[1:]])


if __name__ == "__main__":
    sys.exit(main())
