"""A real release in a scratch copy of the repository: real `dvc repro`, a local DVC remote,
the MLflow store the train stage writes, `python -m stroke_risk.commands.release` as `make release`
runs it. The tests run in order and share the scratch repository; each refusal is checked
to leave no tag, commit, changelog, releases.json or alias behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stroke_risk.release.publish import release_for_model
from tests.pipeline.conftest import workspace_from_template

pytestmark = pytest.mark.e2e
VENV_BIN = Path(sys.executable).parent
# The block the repository's dvc.yaml declares (added to the scratch copy if missing).
ARTIFACTS_BLOCK = {
    "stroke-risk": {
        "path": "models/model.joblib",
        "type": "model",
        "desc": "Stroke-risk classifier: the ten patient fields in, stroke probability out",
        "labels": ["tabular", "classification", "sklearn"],
    }
}


def environment(root: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "GIT_AUTHOR_NAME": "Release Test",
        "GIT_AUTHOR_EMAIL": "release@example.org",
        "GIT_COMMITTER_NAME": "Release Test",
        "GIT_COMMITTER_EMAIL": "release@example.org",
        **extra,
    }


def run(command: list[str], root: Path, check: bool = True, **extra: str):
    result = subprocess.run(
        command,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env=environment(root, **extra),
    )
    if check:
        assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def release(root: Path, version: str, **extra: str) -> subprocess.CompletedProcess:
    return run(
        [sys.executable, "-m", "stroke_risk.commands.release", version], root, check=False, **extra
    )


def refused(root: Path, version: str, **extra: str) -> str:
    """Run a release that must be refused; return its one stderr line."""
    before = snapshot(root)
    result = release(root, version, **extra)
    assert result.returncode == 1, result.stdout + result.stderr
    assert snapshot(root) == before, "a refused release changed something"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("release refused: "), result.stderr
    return lines[0]


def snapshot(root: Path) -> dict:
    """Everything a release may change: HEAD, tags, tracked files' state, files, the alias."""
    files = {
        name: hashlib.md5((root / name).read_bytes()).hexdigest()
        for name in ("CHANGELOG.md", "releases.json", "releases_audit.jsonl")
        if (root / name).exists()
    }
    return {
        "head": run(["git", "rev-parse", "HEAD"], root).stdout,
        "tags": run(["git", "tag", "--list"], root).stdout,
        "status": run(["git", "status", "--porcelain"], root).stdout,
        "files": files,
        "production": alias_version(root),
    }


def alias_version(root: Path) -> str | None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    try:
        return str(client.get_model_version_by_alias("stroke-risk", "production").version)
    except Exception:
        return None


def locked_model_md5(root: Path) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = lock["stages"]["train"]["outs"]
    return next(out["md5"] for out in outs if out["path"] == "models/model.joblib")


def make_run(root: Path) -> None:
    """What `make run` does: the pipeline, then the MLflow sync."""
    run(["dvc", "repro"], root)
    run([sys.executable, "-m", "stroke_risk.commands.mlflow_runs", "sync"], root)


def audit(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "releases_audit.jsonl").read_text().splitlines()]


def commit_all(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", message], root)


@pytest.fixture(scope="module", autouse=True)
def release_key(tmp_path_factory) -> Path:
    """A signing key pair outside the repository; every release command signs with it."""
    from stroke_risk.release.signing import KEY_VARIABLE, keygen

    private = tmp_path_factory.mktemp("keys") / "release.key"
    public = keygen(private)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_VARIABLE, str(private))
        yield public


@pytest.fixture(scope="module")
def repo(tmp_path_factory, pipeline_template) -> Path:
    """A clone-like copy with a tiny budget, the pipeline run and committed, a local remote
    (the session's pipeline_template), with no release recorded yet and the model in MLflow."""
    root = workspace_from_template(
        pipeline_template,
        tmp_path_factory.mktemp("release-repo"),
        tmp_path_factory.mktemp("dvc-remote"),
    )
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    if "artifacts" not in dvc_yaml:
        dvc_yaml["artifacts"] = ARTIFACTS_BLOCK
        (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    return with_no_release(root)


def with_no_release(root: Path) -> Path:
    """The copy as a project that has released nothing: the repository's own release records
    stay behind, the model is in MLflow, and all of it committed."""
    for name in ("releases.json", "releases_audit.jsonl"):
        if (root / name).exists():
            run(["git", "rm", "-q", name], root)
    run([sys.executable, "-m", "stroke_risk.commands.mlflow_runs", "sync"], root)
    if run(["git", "status", "--porcelain"], root).stdout:
        commit_all(root, "no releases yet")
    return root


def test_a_release_without_a_signing_key_is_refused(repo, tmp_path):
    absent = tmp_path / "none" / "release.key"
    line = refused(repo, "1.0.0", STROKE_RELEASE_KEY=str(absent))
    assert f"no release signing key at {absent}" in line
    assert "python -m stroke_risk.commands.signing keygen --out" in line


def test_unpushed_outputs_are_refused(repo):
    line = refused(repo, "1.0.0")
    assert "not in the DVC remote" in line and "make push" in line


def test_a_malformed_version_is_refused(repo):
    assert "not a semantic version" in refused(repo, "1.0")


def test_a_dirty_tree_is_refused(repo):
    (repo / "notes.txt").write_text("draft")
    try:
        line = refused(repo, "1.0.0")
    finally:
        (repo / "notes.txt").unlink()
    assert "working tree is not clean" in line and "notes.txt" in line


def test_a_missing_tracking_store_is_refused(repo, tmp_path):
    run(["dvc", "push", "--run-cache"], repo)
    absent = tmp_path / "nowhere" / "mlflow.db"
    line = refused(repo, "1.0.0", MLFLOW_TRACKING_URI=f"sqlite:///{absent}")
    assert f"no MLflow tracking store at {absent}" in line and "make run" in line
    assert not absent.exists()


def test_a_store_without_this_model_is_refused(repo, tmp_path):
    empty = f"sqlite:///{tmp_path}/empty.db"
    run(
        [
            sys.executable,
            "-c",
            f"import mlflow; mlflow.MlflowClient('{empty}').search_experiments()",
        ],
        repo,
    )
    line = refused(repo, "1.0.0", MLFLOW_TRACKING_URI=empty)
    assert f"model_md5 {locked_model_md5(repo)}" in line and "make run" in line


def test_a_failure_after_the_first_effects_is_undone(repo):
    # A ref named like a directory of the stage tag makes `git tag` fail after the release
    # commit and the version tag exist: both must be taken back.
    run(["git", "tag", "stroke-risk#production#1/blocker"], repo)
    try:
        before = snapshot(repo)
        result = release(repo, "1.0.0")
        assert result.returncode == 1
        assert "'tag stroke-risk#production#1' failed" in result.stderr
        assert "the 3 step(s) before it were undone" in result.stderr
        assert snapshot(repo) == before
    finally:
        run(["git", "tag", "-d", "stroke-risk#production#1/blocker"], repo)


def test_a_release_tags_promotes_and_records(repo, release_key):
    md5 = locked_model_md5(repo)
    source = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    result = release(repo, "1.0.0")
    assert result.returncode == 0, result.stderr
    assert "released stroke-risk 1.0.0" in result.stdout

    # git: one release commit on top of the source, both GTO tags on it, nothing left over.
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    assert run(["git", "rev-parse", "HEAD~1"], repo).stdout.strip() == source
    assert (
        run(["git", "log", "-1", "--format=%s"], repo).stdout.strip() == "Release stroke-risk 1.0.0"
    )
    assert run(["git", "show", "--name-only", "--format=", "HEAD"], repo).stdout.split() == [
        "CHANGELOG.md",
        "releases.json",
        "releases_audit.jsonl",
    ]
    for tag in ("stroke-risk@v1.0.0", "stroke-risk#production#1"):
        assert run(["git", "rev-parse", f"{tag}^{{commit}}"], repo).stdout.strip() == head
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    assert "up to date" in run(["dvc", "status"], repo).stdout

    # GTO (DVC's model registry) reads the tags: v1.0.0 is the production version.
    shown = json.loads(run(["gto", "show", "--json"], repo).stdout)
    assert shown["stroke-risk"]["version"] == "v1.0.0"
    assert shown["stroke-risk"]["stage"]["production"] == "v1.0.0"

    # MLflow: @production is the version whose model_md5 is dvc.lock's.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo}/mlflow.db")
    production = client.get_model_version_by_alias("stroke-risk", "production")
    assert production.tags["model_md5"] == md5

    # The record: releases.json for the service, a CHANGELOG section for people.
    (record,) = json.loads((repo / "releases.json").read_text())
    assert record["version"] == "1.0.0" and record["model_md5"] == md5
    assert record["registry_version"] == str(production.version)
    assert record["source_commit"] == source
    assert release_for_model(md5, repo / "releases.json") == "1.0.0"
    # Signed: the service's check finds this release for the artifact and metadata it loads.
    from stroke_risk.release.signing import check_signed, load_public_key

    signed_version = check_signed(
        [record],
        serving_model=(repo / "models/serving_model.npz").read_bytes(),
        metadata=(repo / "models/model_metadata.json").read_bytes(),
        public_key=load_public_key(release_key),
    )
    assert signed_version == "1.0.0"
    changelog = (repo / "CHANGELOG.md").read_text()
    evaluation = json.loads((repo / "reports/evaluation.json").read_text())
    section = changelog.split("## [1.0.0]")[1]
    assert md5 in section
    auc = evaluation["test"]["roc_auc"]
    assert f"| ROC-AUC | {auc['value']:.3f} | {auc['ci_low']:.3f}–{auc['ci_high']:.3f} |" in section
    recall = evaluation["test"]["recall"]
    assert f"| Recall at threshold | {recall['value']:.3f} |" in section
    assert f"Decision threshold: {evaluation['threshold']['value']:.6g}" in section
    # The project's notes under [Unreleased] stay there; the section lists the gates passed.
    assert "Model releases:" in changelog.split("## [1.0.0]")[0]
    assert "Model releases:" not in section
    assert "- Gates passed (conf/release/gates.yaml): test recall CI lower bound" in section
    # The audit trail: one alias move, from nothing to the released MLflow version.
    (move,) = audit(repo)
    assert (move["action"], move["from"], move["to"], move["release"]) == (
        "release",
        None,
        str(production.version),
        "1.0.0",
    )
    assert move["who"].startswith("Release Test <release@example.org> (user ")
    assert move["why"] == "release 1.0.0: every gate passed" and not move["overridden"]


def test_the_same_version_or_an_unchanged_model_is_refused(repo):
    assert "1.0.0 is already released" in refused(repo, "1.0.0")
    line = refused(repo, "1.0.1")
    assert "already the latest release, 1.0.0" in line and locked_model_md5(repo) in line


def test_a_stale_pipeline_is_refused_then_a_new_model_is_released(repo):
    old_md5 = locked_model_md5(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    # The fitted pipeline carries the feature definitions, so this changes the model file.
    params["featurize"]["high_glucose_cut"] = 140
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(repo, "another glucose cut")
    line = refused(repo, "1.1.0")
    assert "pipeline is not up to date" in line and "featurize" in line and "make run" in line

    make_run(repo)
    commit_all(repo, "retrained")
    new_md5 = locked_model_md5(repo)
    assert new_md5 != old_md5
    assert "not in the DVC remote" in refused(repo, "1.1.0")
    run(["dvc", "push", "--run-cache"], repo)

    # A gate this model cannot pass: refused, each failure on its own line, nothing changed.
    gates_file = repo / "conf/release/gates.yaml"
    committed_gates = gates_file.read_text()
    strict = yaml.safe_load(committed_gates)
    strict["test_ci_low_at_least"] = {"recall": 0.99}
    gates_file.write_text(yaml.safe_dump(strict))
    commit_all(repo, "strict gate")
    before = snapshot(repo)
    result = release(repo, "1.1.0")
    assert result.returncode == 1 and snapshot(repo) == before
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("release refused: 1 release gate(s) failed")
    assert 'OVERRIDE="reason"' in lines[0]
    assert len(lines) == 2 and lines[1].startswith("  gate test recall CI lower bound ≥ 0.99: ")

    # Released anyway with a reason: recorded in the CHANGELOG and the audit trail.
    reason = "clinical lead accepts recall below 0.99 for this pilot"
    result = run(
        [
            sys.executable,
            "-m",
            "stroke_risk.commands.release",
            "release",
            "1.1.0",
            "--override",
            reason,
        ],
        repo,
    )
    assert "released over 1 failed gate(s)" in result.stdout
    section = (repo / "CHANGELOG.md").read_text().split("## [1.1.0]")[1].split("\n## ")[0]
    assert f"- **Released over 1 failed gate(s)**; reason: {reason}" in section
    assert "  - gate test recall CI lower bound ≥ 0.99: " in section
    first, second = audit(repo)
    assert (second["from"], second["to"], second["why"]) == (first["to"], second["to"], reason)
    assert second["overridden"] and len(second["failed_gates"]) == 1

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo}/mlflow.db")
    assert (
        client.get_model_version_by_alias("stroke-risk", "production").tags["model_md5"] == new_md5
    )
    assert release_for_model(new_md5, repo / "releases.json") == "1.1.0"
    assert release_for_model(old_md5, repo / "releases.json") == "1.0.0"
    headings = [
        line for line in (repo / "CHANGELOG.md").read_text().splitlines() if line.startswith("## ")
    ]
    assert [h.split(" - ")[0] for h in headings] == ["## [Unreleased]", "## [1.1.0]", "## [1.0.0]"]
    gates_file.write_text(committed_gates)
    commit_all(repo, "the project's gates again")
    shown = json.loads(run(["gto", "show", "--json"], repo).stdout)
    assert shown["stroke-risk"]["stage"]["production"] == "v1.1.0"
    assert run(["git", "tag", "--list", "stroke-risk#production#*"], repo).stdout.split() == [
        "stroke-risk#production#1",
        "stroke-risk#production#2",
    ]


def test_rollback_returns_production_to_the_previous_release(repo):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo}/mlflow.db")
    releases = {r["version"]: r for r in json.loads((repo / "releases.json").read_text())}
    assert alias_version(repo) == releases["1.1.0"]["registry_version"]
    result = run(
        [
            sys.executable,
            "-m",
            "stroke_risk.commands.release",
            "rollback",
            "--reason",
            "recall dropped",
        ],
        repo,
    )
    assert "rolled back: @production moved from MLflow version" in result.stdout
    assert alias_version(repo) == releases["1.0.0"]["registry_version"]
    assert (
        client.get_model_version_by_alias("stroke-risk", "production").tags["model_md5"]
        == releases["1.0.0"]["model_md5"]
    )
    # Recorded: the audit trail grew by one line, the CHANGELOG has a rollback section.
    *_, back = audit(repo)
    assert (back["action"], back["from"], back["to"], back["release"], back["why"]) == (
        "rollback",
        releases["1.1.0"]["registry_version"],
        releases["1.0.0"]["registry_version"],
        "1.0.0",
        "recall dropped",
    )
    assert len(audit(repo)) == 3
    changelog = (repo / "CHANGELOG.md").read_text()
    headings = [h.split(" - ")[0] for h in changelog.splitlines() if h.startswith("## ")]
    assert headings[:3] == ["## [Unreleased]", "## Rollback to [1.0.0]", "## [1.1.0]"]
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    # GTO reads the unassign/assign tags: v1.0.0 is production again.
    shown = json.loads(run(["gto", "show", "--json"], repo).stdout)
    assert shown["stroke-risk"]["stage"]["production"] == "v1.0.0"
    # Nothing before the first release: refused in one line, nothing changed.
    line = refused_command(repo, ["rollback"])
    assert line == (
        "rollback refused: release 1.0.0 is the first release; there is no earlier one to roll "
        "back to"
    )


def refused_command(root: Path, arguments: list[str]) -> str:
    before = snapshot(root)
    result = run(
        [sys.executable, "-m", "stroke_risk.commands.release", *arguments], root, check=False
    )
    assert result.returncode == 1 and snapshot(root) == before, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line
