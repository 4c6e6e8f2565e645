"""The DVC remote: a per-user default created 0700, and no remote others can write.

Real directories with real owners and modes; the push itself runs the real DVC in a
scratch repository whose HOME is a temporary directory (the default remote's "~").
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stroke_risk.tracking.dvc_remote import (
    DEFAULT_REMOTE_URL,
    create_private_directory,
    local_remote_problem,
)
from tests.conftest import REPO_ROOT


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_default_directory_and_its_parents_are_created_0700(tmp_path: Path) -> None:
    target = tmp_path / "home" / ".cache" / "stroke-risk" / "dvc-remote"
    old = os.umask(0)  # even a permissive umask cannot widen them
    try:
        create_private_directory(target)
    finally:
        os.umask(old)
    for path in (target, target.parent, target.parent.parent):
        assert mode_of(path) == 0o700, path


def test_an_own_private_directory_is_accepted(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir(mode=0o700)
    assert local_remote_problem(remote, shared_group=False) is None


def test_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    remote.chmod(0o777)
    problem = local_remote_problem(remote, shared_group=False)
    assert problem is not None
    assert str(remote) in problem and "any user" in problem and f"chmod o-w {remote}" in problem


def test_a_group_writable_directory_needs_the_team_setup(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    remote.chmod(0o770)
    problem = local_remote_problem(remote, shared_group=True)
    assert problem is not None and "chmod 2770" in problem  # not setgid: not a team remote
    remote.chmod(0o2770)
    assert local_remote_problem(remote, shared_group=False) is not None  # no cache.shared
    assert local_remote_problem(remote, shared_group=True) is None


@pytest.mark.skipif(os.getuid() != 0, reason="making a directory another user owns needs root")
def test_a_directory_another_user_created_first_is_refused(tmp_path: Path) -> None:
    """The /var/tmp attack: another local user creates the remote before you do."""
    remote = tmp_path / "remote"
    remote.mkdir(mode=0o755)
    os.chown(remote, 65534, 65534)
    problem = local_remote_problem(remote, shared_group=False)
    assert problem is not None
    assert str(remote) in problem and "not to you" in problem and DEFAULT_REMOTE_URL in problem


def scratch_repository(root: Path) -> dict[str, str]:
    """A git + DVC repository with the project's .dvc/config and one tracked file; returns
    the environment whose HOME is root/home."""
    env = {**os.environ, "HOME": str(root / "home"), "PYTHONPATH": str(REPO_ROOT)}
    env = {key: value for key, value in env.items() if not key.startswith("DVC_")}
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=root, env=env, check=True)
    shutil.copy(REPO_ROOT / ".dvc" / "config", root / ".dvc" / "config")
    (root / ".dvc" / "config").write_text(
        "\n".join(
            line
            for line in (root / ".dvc" / "config").read_text().splitlines()
            if "html_template" not in line and "[plots]" not in line
        )
        + "\n"
    )
    (root / "data.txt").write_text("model bytes\n")
    subprocess.run(["dvc", "add", "-q", "data.txt"], cwd=root, env=env, check=True)
    return env


def push(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stroke_risk.commands.dvc_remote", "push"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.integration  # runs git, dvc and the push command
def test_make_push_creates_the_per_user_default_remote_0700(tmp_path: Path) -> None:
    env = scratch_repository(tmp_path)
    result = push(tmp_path, env)
    assert result.returncode == 0, result.stderr
    remote = tmp_path / "home" / ".cache" / "stroke-risk" / "dvc-remote"
    assert mode_of(remote) == 0o700 and mode_of(remote.parent) == 0o700
    assert any(path.is_file() for path in remote.rglob("*")), "nothing was pushed"


@pytest.mark.integration  # runs git, dvc and the push command
def test_make_push_refuses_a_default_remote_others_can_write(tmp_path: Path) -> None:
    env = scratch_repository(tmp_path)
    remote = tmp_path / "home" / ".cache" / "stroke-risk" / "dvc-remote"
    remote.mkdir(parents=True)
    remote.chmod(0o777)
    result = push(tmp_path, env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(remote) in lines[0] and "chmod o-w" in lines[0], lines
    assert not any(remote.iterdir()), "pushed into an untrusted remote"
