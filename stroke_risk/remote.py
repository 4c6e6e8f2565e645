"""`make push` / `make pull`: the DVC remote with a clear line when it is not usable.

DVC alone answers a missing remote with "Is your cache up to date?"; this names the remote,
its URL and the fix before calling DVC.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

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


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("push", "pull"):
        sys.exit("usage: python -m stroke_risk.remote push|pull")
    problem = remote_problem(command) or remote_directory_problem()
    if problem:
        print(f"dvc {command} failed: {problem}", file=sys.stderr)
        sys.exit(1)
    # The run cache travels too, so another machine's `dvc repro --pull` skips training.
    args = ["dvc", command, "--run-cache"]
    sys.exit(subprocess.run(args).returncode)


if __name__ == "__main__":
    main()
