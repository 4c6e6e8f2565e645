"""Entry-point helper for the stage scripts: user errors become one clear line."""

from __future__ import annotations

import sys
from collections.abc import Callable


class InputProblemsError(ValueError):
    """Bad input with every problem found, one line each (the data room's
    DataValidationError is one; defined here so this ground module imports no room)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class StageError(RuntimeError):
    """A problem the user can fix (bad input, bad parameter); printed without traceback."""


# DVC deletes a stage's outputs before running it (prepare's are `persist`, so a bad CSV
# costs nothing); this one command brings back the committed params and every output.
# What `make restore` runs: the committed params, lock and reports, then every output from the
# cache, the remote, or a rebuild, saying which (stroke_risk/tracking/dvc_remote.py).
RESTORE_COMMAND = "python -m stroke_risk.commands.dvc_remote restore"


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main(); on a user error print `stage NAME failed: ...` and exit 1.

    Stages validate their params and inputs first and write outputs atomically, so a
    failure writes nothing; the message says how to restore what DVC removed beforehand.
    """
    try:
        main()
    except InputProblemsError as error:
        print(f"stage {name} failed: invalid input data:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        _print_restore_hint()
        sys.exit(1)
    except (StageError, FileNotFoundError, KeyError, ValueError) as error:
        print(f"stage {name} failed: {error}", file=sys.stderr)
        _print_restore_hint()
        sys.exit(1)


def _print_restore_hint() -> None:
    print(
        f"  the workspace's last committed state comes back with: make restore "
        f"(or {RESTORE_COMMAND})",
        file=sys.stderr,
    )
