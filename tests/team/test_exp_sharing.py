"""Sharing an experiment with a teammate as the README says: `dvc exp push origin NAME` sends
its Git ref to the Git remote and its outputs to the DVC remote; in the teammate's clone
`dvc exp pull origin NAME` + `dvc exp apply NAME` gives the exact outputs with nothing rerun.

Real Git (a bare repository as `origin`) and real DVC with the default kind of remote (a
local directory), in tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stroke_risk.data.load import file_md5
from stroke_risk.tracking.dvc_remote import output_hashes
from tests.pipeline.conftest import TINY, workspace_from_template
from tests.team.conftest import git, run

pytestmark = pytest.mark.e2e
MODEL = "models/model_metadata.json"


def test_a_pushed_experiment_reaches_a_teammates_clone(
    tmp_path: Path, pipeline_template: Path
) -> None:
    remote = tmp_path / "dvc-remote"
    mine = workspace_from_template(pipeline_template, tmp_path / "mine", remote)
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    git(mine, "remote", "add", "origin", str(origin))
    git(mine, "push", "-q", "origin", "HEAD:refs/heads/main")
    run(["dvc", "exp", "run", "-n", "r70", "-S", "threshold.target_recall=0.7", *TINY], mine)
    pushed = run(["dvc", "exp", "push", "origin", "r70"], mine)
    assert "Pushed experiment r70" in pushed.stdout, pushed.stdout

    theirs = tmp_path / "theirs"
    run(["git", "clone", "-q", "-b", "main", str(origin), str(theirs)], tmp_path)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], theirs)
    run(["dvc", "exp", "pull", "origin", "r70"], theirs)
    assert "r70" in run(["dvc", "exp", "list", "--name-only"], theirs).stdout
    run(["dvc", "exp", "apply", "r70"], theirs)
    # The experiment's own outputs, checked out from the DVC remote: nothing to rerun.
    assert "up to date" in run(["dvc", "status"], theirs).stdout
    locked = output_hashes([MODEL, "models/model.joblib"], theirs / "dvc.lock")
    for path, md5 in locked.items():
        assert file_md5(theirs / path) == md5
    # `dvc exp run` left `mine` at the experiment's outputs, which differ from the commit's.
    assert locked == output_hashes([MODEL, "models/model.joblib"], mine / "dvc.lock")
    committed = run(["git", "show", "HEAD:dvc.lock"], theirs).stdout
    assert locked[MODEL] not in committed
