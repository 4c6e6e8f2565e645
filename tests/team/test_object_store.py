"""The team's S3-compatible object storage (SeaweedFS here), for real.

DVC: one clone pushes the committed pipeline outputs to an S3 remote set up by the same
commands the README shows (`object_store dvc-remote`); a second clone, with nothing but the
tracked files, pulls them and serves the model (the service loads the pulled serving
artifact and answers as the first clone does). The MLflow side (a run whose model lives in
the bucket, loaded back through `models:/stroke-risk@candidate`) runs in
tests/team/test_tracking_server.py, whose session server stores artifacts in this store.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from app.factory import create_app
from app.settings import Settings
from stroke_risk.data.load import file_md5
from stroke_risk.data.schema import EXAMPLE_RECORD
from stroke_risk.tracking.dvc_remote import locked_outputs, output_hashes
from stroke_risk.tracking.object_store import (
    ObjectStoreError,
    artifact_destination,
    dvc_remote_commands,
    s3_client,
)
from tests.conftest import REPO_ROOT, copy_tracked_files
from tests.team.conftest import ObjectStore, command_env, git, run

SERVED = ("models/serving_model.npz", "models/model_metadata.json", "models/reference_profile.json")


def fresh_clone(root: Path) -> Path:
    """What `git clone` gives: tracked files only, no DVC outputs, its own DVC cache."""
    root.mkdir(parents=True)
    copy_tracked_files(root)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "clone")
    return root


def use_s3_remote(root: Path, store: ObjectStore, prefix: str) -> None:
    for command in dvc_remote_commands(url=store.url(prefix), endpoint_url=store.endpoint_url):
        run(command, root)


def with_pipeline_outputs(root: Path) -> None:
    """Put the repository's built outputs (those dvc.lock records) into root and its cache,
    as `dvc repro` would have (tests never write into the repository)."""
    hashes = output_hashes(locked_outputs(REPO_ROOT / "dvc.lock"), REPO_ROOT / "dvc.lock")
    for path, md5 in hashes.items():
        source = REPO_ROOT / path
        if source.is_dir():
            shutil.copytree(source, root / path, dirs_exist_ok=True)
            continue
        if not source.is_file() or file_md5(source) != md5:
            pytest.fail(f"{path} is not the one dvc.lock records: run `dvc repro` or `make pull`")
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, root / path)
    run(["dvc", "commit", "--force"], root)


def dvc_remote(root: Path, command: str, store: ObjectStore) -> Any:
    """`make push` / `make pull` (stroke_risk.tracking.dvc_remote), keys from the environment."""
    return run(
        [sys.executable, "-m", "stroke_risk.commands.dvc_remote", command],
        root,
        env=command_env(**store.credentials.env(), PYTHONPATH=str(REPO_ROOT)),
        timeout=300,
    )


def predict(root: Path) -> dict[str, Any]:
    client = create_app(Settings.for_project(root), extensions=()).test_client()
    answer = client.post("/predict", json={"instances": [dict(EXAMPLE_RECORD)]})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    prediction = dict(answer.json["predictions"][0])
    prediction.pop("prediction_id")  # unique per answer, by design
    return prediction


@pytest.mark.scenario
@pytest.mark.e2e
def test_push_from_one_clone_then_pull_and_serve_in_another(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    pusher = fresh_clone(tmp_path / "pusher")
    with_pipeline_outputs(pusher)
    use_s3_remote(pusher, object_store, "dvc-push-pull")
    dvc_remote(pusher, "push", object_store)
    assert object_store.keys("dvc-push-pull/files/md5/"), "nothing reached the bucket"
    # No key was written to any config file: they stay in the environment.
    config = (pusher / ".dvc" / "config.local").read_text()
    assert object_store.credentials.secret_access_key not in config
    assert object_store.credentials.access_key_id not in config

    puller = fresh_clone(tmp_path / "puller")
    assert not (puller / SERVED[0]).exists()
    use_s3_remote(puller, object_store, "dvc-push-pull")
    dvc_remote(puller, "pull", object_store)
    hashes = output_hashes(SERVED, puller / "dvc.lock")
    for path in SERVED:
        assert file_md5(puller / path) == hashes[path], path
    # The service loads the pulled artifact (verified against dvc.lock) and answers as the
    # clone that built it.
    assert predict(puller) == predict(pusher)


def test_the_store_refuses_requests_without_the_key(object_store: ObjectStore) -> None:
    from botocore.exceptions import ClientError

    from stroke_risk.tracking.object_store import S3Credentials

    wrong = S3Credentials(object_store.credentials.access_key_id, "not-the-secret")
    client: Any = s3_client(object_store.endpoint_url, wrong)
    with pytest.raises(ClientError) as refused:
        client.list_objects_v2(Bucket=object_store.bucket)
    assert refused.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "AccessDenied"}


def test_tracking_server_names_an_unusable_artifact_store_in_one_line(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    cases = {
        "not-the-secret": "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
        object_store.credentials.secret_access_key: "no such bucket: create it first",
    }
    for secret, reason in cases.items():
        bucket = object_store.bucket if secret == "not-the-secret" else "no-such-bucket"
        result = run(
            [
                sys.executable,
                "-m",
                "stroke_risk.commands.tracking_server",
                "--state-dir",
                str(state),
                "--artifacts",
                f"s3://{bucket}/mlflow",
            ],
            REPO_ROOT,
            env=command_env(**{**object_store.client_env(), "AWS_SECRET_ACCESS_KEY": secret}),
            check=False,
            timeout=60,
        )
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"tracking-server: --artifacts s3://{bucket}/mlflow: bucket '{bucket}' at "
            f"{object_store.endpoint_url}: {reason} (MLFLOW_S3_ENDPOINT_URL)"
        )
        assert secret not in result.stdout + result.stderr
        # Refused before anything started or was created.
        assert not state.exists()


def test_dvc_remote_commands_keep_everything_in_config_local() -> None:
    commands = dvc_remote_commands(url="s3://b/p", endpoint_url="http://127.0.0.1:9")
    assert all(
        command[:3] in (["dvc", "remote", "add"], ["dvc", "remote", "modify"])
        for command in commands
    )
    assert all("--local" in command for command in commands)
    assert dvc_remote_commands(url="s3://b/p", endpoint_url=None) == commands[:1]
    with pytest.raises(ObjectStoreError, match="not an s3://BUCKET/PATH"):
        dvc_remote_commands(url="/srv/remote", endpoint_url=None)


def test_artifacts_default_to_the_state_folder(tmp_path: Path) -> None:
    assert artifact_destination(None, tmp_path) == tmp_path / "artifacts"


def test_an_artifacts_url_that_is_not_s3_or_lacks_keys_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(ObjectStoreError) as not_s3:
        artifact_destination("https://bucket/mlflow", tmp_path)
    assert str(not_s3.value) == (
        "--artifacts: 'https://bucket/mlflow' is not an s3://BUCKET/PATH URL"
    )
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ObjectStoreError, match=r"^--artifacts: set AWS_SECRET_ACCESS_KEY "):
        artifact_destination("s3://bucket/mlflow", tmp_path)


def test_a_usable_artifacts_bucket_is_the_destination(
    object_store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in object_store.client_env().items():
        monkeypatch.setenv(name, value)
    given = f"s3://{object_store.bucket}/mlflow/"
    assert artifact_destination(given, tmp_path) == f"s3://{object_store.bucket}/mlflow"
