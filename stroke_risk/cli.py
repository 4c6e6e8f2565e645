"""Entry-point helper for the stage scripts: user errors become one clear line."""

from __future__ import annotations

import sys
from collections.abc import Callable

from stroke_risk.data import DataValidationError


class StageError(RuntimeError):
    """A problem the user can fix (bad input, bad parameter); printed without traceback."""


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main(); on a user error print `stage NAME failed: ...` and exit 1.

    Stages write outputs atomically, so a failure leaves the previous outputs untouched.
    """
    try:
        main()
    except DataValidationError as error:
        print(f"stage {name} failed: invalid input data:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        sys.exit(1)
    except (StageError, FileNotFoundError, KeyError, ValueError) as error:
        print(f"stage {name} failed: {error}", file=sys.stderr)
        sys.exit(1)
