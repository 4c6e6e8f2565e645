"""`make push` / `make pull` / `make restore`: DVC outputs with one clear line when they fail.

DVC alone answers a committed output that is neither in the cache nor in the remote with
"Checkout failed ... Is your cache up to date?" (and `dvc checkout` first deletes the
workspace copy). This happens whenever a model was rebuilt where its hash differs (another
BLAS kernel) or a teammate committed a `dvc.lock` without `make push`. Here `pull` names the
missing outputs and the two fixes; `restore` tries the cache, then the remote, then rebuilds
the missing outputs with `dvc repro`, so it ends in a working workspace or one line naming
the command to run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

# What `make restore` puts back from git before the DVC outputs (reports/ is committed).
GIT_RESTORED = ("params.yaml", "dvc.lock", "reports")


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


@dataclass(frozen=True)
class MissingOutputs:
    """Committed DVC outputs (dvc.lock) whose exact version this machine cannot check out."""

    not_in_cache: tuple[str, ...]
    # Also absent from the default remote; empty when the remote was not asked.
    not_in_remote: tuple[str, ...] = ()

    @property
    def unobtainable(self) -> tuple[str, ...]:
        """Outputs neither in the cache nor in the remote: only a rebuild brings them back."""
        return tuple(path for path in self.not_in_cache if path in self.not_in_remote)


def missing_outputs(*, ask_remote: bool) -> MissingOutputs:
    """The committed outputs missing from the cache (and from the remote when asked)."""
    command = ["dvc", "data", "status", "--json"] + (["--not-in-remote"] if ask_remote else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    status = json.loads(result.stdout or "{}")
    return MissingOutputs(
        tuple(sorted(status.get("not_in_cache", []))),
        tuple(sorted(status.get("not_in_remote", []))),
    )


def locked_outputs(lock_file: Path = Path("dvc.lock")) -> list[str]:
    """Every output path dvc.lock records, in pipeline order."""
    lock = yaml.safe_load(lock_file.read_text()) or {}
    return [out["path"] for stage in lock.get("stages", {}).values() for out in stage["outs"]]


def output_hashes(paths: Sequence[str], lock_file: Path = Path("dvc.lock")) -> dict[str, str]:
    """{path: md5 dvc.lock records} for the given outputs (the name of the missing object)."""
    lock = yaml.safe_load(lock_file.read_text()) or {}
    found = {
        out["path"]: out.get("md5", "?")
        for stage in lock.get("stages", {}).values()
        for out in stage["outs"]
    }
    return {path: found.get(path, "?") for path in paths}


def unobtainable_message(paths: Sequence[str], remote: tuple[str, str] | None) -> str:
    """One line: which outputs are nowhere to be had here, and the two ways to get them."""
    named = ", ".join(f"{path} (md5 {md5})" for path, md5 in output_hashes(paths).items())
    where = f"remote '{remote[0]}' ({remote[1]})" if remote else "any remote"
    return (
        f"{named} of the checked-out commit is neither in the DVC cache nor in {where}: "
        f"run `make push` on the machine that built it, or rebuild it here with `dvc repro`"
    )


def pull() -> int:
    """`dvc pull --run-cache`; on missing objects one line naming them and the fixes."""
    problem = remote_problem("pull")
    if problem:
        print(f"dvc pull failed: {problem}", file=sys.stderr)
        return 1
    # The run cache travels too, so another machine's `dvc repro --pull` skips training.
    result = subprocess.run(["dvc", "pull", "--run-cache"], capture_output=True, text=True)
    if result.returncode == 0:
        print(result.stdout, end="")
        return 0
    missing = missing_outputs(ask_remote=True)
    if missing.unobtainable:
        print(
            f"dvc pull failed: {unobtainable_message(missing.unobtainable, default_remote())}",
            file=sys.stderr,
        )
    else:
        print(f"dvc pull failed:\n{result.stdout}{result.stderr}", file=sys.stderr, end="")
    return 1


def restore() -> int:
    """Back to the committed params, lock, reports and outputs; rebuild what is nowhere.

    Outputs missing from the cache are fetched from the remote; those the remote lacks too
    are rebuilt by `dvc repro` (which reruns exactly the stages whose outputs are missing).
    Until then their workspace copies stay in place: `dvc checkout` would delete them.
    """
    subprocess.run(["git", "checkout", "--", *GIT_RESTORED], check=True)
    print(f"restore: {', '.join(GIT_RESTORED)} are back at HEAD")
    missing = missing_outputs(ask_remote=False)
    remote = default_remote()
    if missing.not_in_cache:
        problem = remote_problem("pull")
        if problem is None:
            subprocess.run(["dvc", "fetch", *missing.not_in_cache], capture_output=True)
            fetched = set(missing.not_in_cache) - set(
                missing_outputs(ask_remote=False).not_in_cache
            )
            if fetched and remote:
                print(f"restore: fetched {', '.join(sorted(fetched))} from remote '{remote[0]}'")
            missing = missing_outputs(ask_remote=False)
        else:
            print(f"restore: the remote cannot help: {problem}")
    available = [path for path in locked_outputs() if path not in missing.not_in_cache]
    # --force: restoring means discarding the workspace's versions of these outputs.
    checkout = subprocess.run(["dvc", "checkout", "--force", *available], capture_output=True)
    if checkout.returncode != 0:
        print(f"restore failed: `dvc checkout` said: {checkout.stderr.decode().strip()}")
        return 1
    if not missing.not_in_cache:
        print("restore: every output is the committed version")
        return 0
    print(f"restore: {unobtainable_message(missing.not_in_cache, remote)}; running `dvc repro`")
    if subprocess.run(["dvc", "repro"]).returncode != 0:
        print(
            "restore failed: `dvc repro` could not rebuild "
            f"{', '.join(missing.not_in_cache)}; fix the error above, then run `dvc repro`",
            file=sys.stderr,
        )
        return 1
    lock_changed = subprocess.run(["git", "diff", "--quiet", "--", "dvc.lock"]).returncode != 0
    print(
        f"restore: rebuilt {', '.join(missing.not_in_cache)}"
        + (
            "; this build's hashes differ from the commit's (`git diff dvc.lock`), commit them "
            "and `make push` to share them"
            if lock_changed
            else ", byte-identical to the commit"
        )
    )
    return 0


COMMANDS = {"pull": pull, "restore": restore}


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("push", *COMMANDS):
        sys.exit("usage: python -m stroke_risk.remote push|pull|restore")
    if command in COMMANDS:
        try:
            sys.exit(COMMANDS[command]())
        except (RuntimeError, subprocess.CalledProcessError) as error:
            print(f"{command} failed: {error}", file=sys.stderr)
            sys.exit(1)
    problem = remote_problem(command)
    if problem:
        print(f"dvc {command} failed: {problem}", file=sys.stderr)
        sys.exit(1)
    sys.exit(subprocess.run(["dvc", "push", "--run-cache"]).returncode)


if __name__ == "__main__":
    main()
