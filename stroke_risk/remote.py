"""`make push` / `make pull`: the DVC remote with a clear line when it is not usable.

DVC alone answers a missing remote with "Is your cache up to date?"; this names the remote,
its URL and the fix before calling DVC.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def default_remote() -> tuple[str, str] | None:
    """(name, url) of the repository's default DVC remote, or None when none is set."""
    name = _dvc_config("core.remote")
    if not name:
        return None
    return name, _dvc_config(f"remote.{name}.url")


def _dvc_config(key: str) -> str:
    result = subprocess.run(["dvc", "config", key], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def remote_problem(command: str) -> str | None:
    """Why `command` (push or pull) cannot use the default remote, or None when it can."""
    remote = default_remote()
    fix = "set one with: dvc remote add -d --local NAME URL (README 'DVC remote')"
    if remote is None:
        return f"no default DVC remote is configured; {fix}"
    name, url = remote
    is_local_path = "://" not in url
    if command == "pull" and is_local_path and not Path(url).is_dir():
        return (
            f"DVC remote '{name}' ({url}) does not exist on this machine: run `make push` "
            f"where the outputs were built, or point it elsewhere: "
            f"dvc remote modify --local {name} url PATH"
        )
    return None


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("push", "pull"):
        sys.exit("usage: python -m stroke_risk.remote push|pull")
    problem = remote_problem(command)
    if problem:
        print(f"dvc {command} failed: {problem}", file=sys.stderr)
        sys.exit(1)
    # The run cache travels too, so another machine's `dvc repro --pull` skips training.
    args = ["dvc", command, "--run-cache"]
    sys.exit(subprocess.run(args).returncode)


if __name__ == "__main__":
    main()
