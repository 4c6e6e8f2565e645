"""`make restore` and `make pull` when a committed output is missing from the cache, the
remote or both (a model rebuilt elsewhere with another hash, a `dvc.lock` committed without
`make push`): real DVC in a scratch repository with its own cache and local remote.

Each ends in a working workspace or one line naming the missing object and the command to
run, never DVC's "Checkout failed ... Is your cache up to date?".
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stroke_risk.data.load import file_md5
from tests.pipeline.conftest import workspace_from_template
from tests.team.conftest import run

pytestmark = pytest.mark.e2e
MODEL = "models/model.joblib"
RAW_DVC_ERROR = "Is your cache up to date"


@pytest.fixture(scope="module")
def pushed_repo(tmp_path_factory: pytest.TempPathFactory, pipeline_template: Path) -> Path:
    """A scratch repository with the pipeline run, committed and pushed to its own remote."""
    base = tmp_path_factory.mktemp("recovery")
    root = workspace_from_template(pipeline_template, base / "repo", base / "remote")
    run(["dvc", "push", "--run-cache"], root, timeout=300)
    return root


@pytest.fixture
def workspace(pushed_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the pushed repository and of its remote."""
    root = Path(shutil.copytree(pushed_repo, tmp_path / "repo", symlinks=True))
    remote = Path(shutil.copytree(pushed_repo.parent / "remote", tmp_path / "remote"))
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], root)
    return root


def locked_md5(root: Path, path: str) -> str:
    from stroke_risk.tracking.dvc_remote import output_hashes

    return output_hashes([path], root / "dvc.lock")[path]


def object_path(store: Path, md5: str) -> Path:
    return store / "files" / "md5" / md5[:2] / md5[2:]


def remove_object(root: Path, *, cache: bool, remote: bool) -> str:
    md5 = locked_md5(root, MODEL)
    stores = [root / ".dvc" / "cache"] * cache + [root.parent / "remote"] * remote
    for store in stores:
        object_path(store, md5).unlink()
    return md5


def make(root: Path, target: str) -> object:
    # -o: the scratch copy has no .venv of its own; the test's venv is on PATH.
    return run(["make", "-o", ".venv/.runtime-installed", target], root, timeout=600, check=False)


def test_restore_fetches_from_the_remote_what_the_cache_lacks(workspace: Path) -> None:
    md5 = remove_object(workspace, cache=True, remote=False)
    # The workspace holds another build of the model (what a different BLAS produces).
    (workspace / MODEL).write_bytes((workspace / MODEL).read_bytes() + b"another build")
    result = make(workspace, "restore")
    assert result.returncode == 0, result.stdout + result.stderr
    # The model and the update stage's copy of it (the same object) come back together.
    (fetched,) = [line for line in result.stdout.splitlines() if "restore: fetched" in line]
    assert MODEL in fetched.split("fetched ")[1].split(" from")[0].split(", ")
    assert fetched.endswith("from remote 'local'")
    assert file_md5(workspace / MODEL) == md5
    assert RAW_DVC_ERROR not in result.stdout + result.stderr


def test_restore_rebuilds_what_neither_cache_nor_remote_has(workspace: Path) -> None:
    md5 = remove_object(workspace, cache=True, remote=True)
    (workspace / MODEL).write_bytes(b"another build")
    result = make(workspace, "restore")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{MODEL} (md5 {md5})" in result.stdout
    assert "of the checked-out commit is neither" in result.stdout
    assert f"rebuilt {MODEL}" in result.stdout
    # A working workspace: the model is the one dvc.lock now records, and DVC agrees.
    assert file_md5(workspace / MODEL) == locked_md5(workspace, MODEL)
    assert "up to date" in run(["dvc", "status"], workspace).stdout
    assert RAW_DVC_ERROR not in result.stdout + result.stderr


def test_pull_names_the_missing_object_and_both_fixes(workspace: Path) -> None:
    md5 = remove_object(workspace, cache=True, remote=True)
    (workspace / MODEL).unlink()
    result = make(workspace, "pull")
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("dvc pull failed")]
    assert f"{MODEL} (md5 {md5})" in line
    assert "`make push` on the machine that built it" in line and "`dvc repro`" in line
    assert RAW_DVC_ERROR not in result.stdout + result.stderr
    # The other outputs were still pulled: only the named one is absent.
    assert (workspace / "models" / "model_metadata.json").is_file()


def test_pull_fetches_what_the_cache_lacks(workspace: Path) -> None:
    md5 = remove_object(workspace, cache=True, remote=False)
    (workspace / MODEL).unlink()
    result = make(workspace, "pull")
    assert result.returncode == 0, result.stdout + result.stderr
    assert file_md5(workspace / MODEL) == md5
