"""The DVC remote: push, pull and restore outputs, with one clear line when they fail.

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
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

# What `make restore` puts back from git before the DVC outputs (reports/ is committed).
GIT_RESTORED = ("params.yaml", "dvc.lock", "reports")

# The default remote (.dvc/config): a per-user directory, shared by every clone of this user
# and by no other user. DVC expands the "~" of a local remote's url itself.
DEFAULT_REMOTE_URL = "~/.cache/stroke-risk/dvc-remote"


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
    if command == "pull" and is_local_path and not local_remote_path(url).is_dir():
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
    problem = remote_problem("pull") or remote_directory_problem()
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

# --- ownership and permissions of a local remote -------------------------------------------


def local_remote_path(url: str) -> Path:
    """The directory of a local remote's url as DVC reads it: "~" expanded, a relative
    path relative to the .dvc directory that holds the config."""
    path = Path(url).expanduser()
    return path if path.is_absolute() else (Path(".dvc") / path).absolute()


def create_private_directory(path: Path) -> None:
    """Create path and its missing parents with mode 0700 (the umask cannot widen them)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)
        directory.chmod(0o700)


def _cache_shared_group() -> bool:
    return _dvc_config("cache.shared").strip().lower() == "group"


def local_remote_problem(path: Path, *, shared_group: bool) -> str | None:
    """Why a local remote directory cannot be trusted, or None when it can.

    Anyone who can write the remote can replace a model or a run-cache entry that
    `dvc pull` / `dvc repro --pull` then checks out. So the directory must be owned by
    this user and writable by nobody else; or, for a team remote (README "DVC remote"), be
    a setgid directory of a group this user belongs to, with `cache.shared group`, and not
    writable by other users. The answer names the directory and the fix in one line.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return None  # push creates it (the default one: create_private_directory)
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISDIR(info.st_mode):
        return f"DVC remote {path} is not a directory; point the remote at a directory"
    if mode & stat.S_IWOTH:
        return (
            f"DVC remote {path} can be written by any user (mode {mode:o}), who could replace "
            f"models in it; run: chmod o-w {path} (or use a directory of your own)"
        )
    team = shared_group and mode & stat.S_ISGID and info.st_gid in {os.getgid(), *os.getgroups()}
    if info.st_uid != os.getuid() and not team:
        owner = _owner_name(info.st_uid)
        return (
            f"DVC remote {path} belongs to {owner}, not to you: whoever created it can replace "
            f"models in it; use your own directory (dvc remote modify --local local url "
            f"{DEFAULT_REMOTE_URL}) or a team directory set up as README 'DVC remote' shows"
        )
    if mode & stat.S_IWGRP and not team:
        return (
            f"DVC remote {path} can be written by its group (mode {mode:o}); run: chmod g-w "
            f"{path}, or make it a team remote: chmod 2770 {path} and "
            f"dvc config cache.shared group (README 'DVC remote')"
        )
    return None


def _owner_name(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid {uid}"


def remote_directory_problem() -> str | None:
    """Prepare and check the default remote when it is a local directory: the per-user
    default is created 0700 on first use; any local remote must pass local_remote_problem."""
    remote = default_remote()
    if remote is None or "://" in remote[1]:
        return None
    path = local_remote_path(remote[1])
    # `dvc config` answers with "~" already expanded.
    if path == Path(DEFAULT_REMOTE_URL).expanduser():
        create_private_directory(path)
    return local_remote_problem(path, shared_group=_cache_shared_group())
