"""`make push` / `make pull` / `make restore`: the DVC remote, run cache included.

The library it calls: stroke_risk.tracking.dvc_remote.
"""

from __future__ import annotations

import subprocess
import sys

from stroke_risk.tracking.dvc_remote import COMMANDS, remote_directory_problem, remote_problem


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("push", *COMMANDS):
        sys.exit("usage: python -m stroke_risk.commands.dvc_remote push|pull|restore")
    if command in COMMANDS:
        try:
            sys.exit(COMMANDS[command]())
        except (RuntimeError, subprocess.CalledProcessError) as error:
            print(f"{command} failed: {error}", file=sys.stderr)
            sys.exit(1)
    problem = remote_problem(command) or remote_directory_problem()
    if problem:
        print(f"dvc {command} failed: {problem}", file=sys.stderr)
        sys.exit(1)
    sys.exit(subprocess.run(["dvc", "push", "--run-cache"]).returncode)


if __name__ == "__main__":
    main()
