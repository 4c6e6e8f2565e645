"""Authenticity: with STROKE_TRUSTED_KEY the real server serves only a release-signed model.

Key pairs are made by `python -m stroke_risk.commands.signing keygen` (the documented command) in
tmp_path; releases.json records are signed by stroke_risk.release.signing.sign_release, what
`make release` calls (tests/release/test_release_e2e.py runs the release itself).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from app.settings import Settings
from stroke_risk.release.signing import (
    SigningError,
    check_signed,
    load_private_key,
    load_public_key,
    sign_release,
)
from tests.app.conftest import (
    ARTIFACT_PATHS,
    REPO_ROOT,
    Server,
    run_server_expecting_failure,
    write_lock,
)


def keygen(path: Path) -> Path:
    """Run the documented key-generation command; return the public key's path."""
    result = subprocess.run(
        [sys.executable, "-m", "stroke_risk.commands.signing", "keygen", "--out", str(path)],
        cwd=path.parent if path.parent.exists() else "/",
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert (path.stat().st_mode & 0o777) == 0o600
    return path.with_name(path.name + ".pub")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two key pairs: the release signer's and somebody else's."""
    root = tmp_path_factory.mktemp("keys")
    return {
        name: (root / f"{name}.key", keygen(root / f"{name}.key")) for name in ("ours", "other")
    }


@pytest.fixture
def project(logreg_settings: Settings, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(logreg_settings.project_dir, root)
    return root


def sign_into_releases(root: Path, private_key: Path, version: str = "1.0.0") -> None:
    record = {
        "version": version,
        "model_md5": "0" * 32,
        "signature": sign_release(
            version=version,
            serving_model=(root / "models/serving_model.npz").read_bytes(),
            metadata=(root / "models/model_metadata.json").read_bytes(),
            private_key=load_private_key(private_key),
        ),
    }
    (root / "releases.json").write_text(json.dumps([record]))


def one_line(result: Any) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, lines
    return lines[0]


def test_a_signed_model_is_served_with_the_trusted_key(
    project: Path, keys: dict, server_factory: Callable[..., Server]
) -> None:
    private, public = keys["ours"]
    sign_into_releases(project, private)
    server = server_factory(STROKE_PROJECT_DIR=str(project), STROKE_TRUSTED_KEY=str(public))
    assert requests.get(f"{server.url}/version", timeout=5).json()["release"] == "unreleased"
    assert "model signed by release 1.0.0" in server.log()
    assert "authenticity is not checked" not in server.log()


@pytest.mark.integration  # runs gunicorn, which must refuse to start
def test_an_unsigned_model_is_refused_in_one_line(
    project: Path, keys: dict, tmp_path: Path
) -> None:
    _, public = keys["ours"]
    result = run_server_expecting_failure(
        tmp_path, STROKE_PROJECT_DIR=str(project), STROKE_TRUSTED_KEY=str(public)
    )
    line = one_line(result)
    assert "models/serving_model.npz refused: unsigned" in line and "make release" in line


@pytest.mark.integration  # runs gunicorn, which must refuse to start
def test_a_model_signed_by_another_key_is_refused(
    project: Path, keys: dict, tmp_path: Path
) -> None:
    sign_into_releases(project, keys["other"][0])
    result = run_server_expecting_failure(
        tmp_path, STROKE_PROJECT_DIR=str(project), STROKE_TRUSTED_KEY=str(keys["ours"][1])
    )
    assert "refused: wrongly signed: the signature of release 1.0.0" in one_line(result)


@pytest.mark.integration  # runs gunicorn, which must refuse to start
def test_a_signed_model_with_another_threshold_is_refused(
    project: Path, keys: dict, tmp_path: Path
) -> None:
    """The signature covers the metadata: an edited threshold (dvc.lock updated to match,
    so the md5 check passes) is no longer the signed release."""
    private, public = keys["ours"]
    sign_into_releases(project, private)
    metadata_path = project / "models/model_metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["decision_threshold"] = 0.5
    metadata_path.write_text(json.dumps(metadata))
    write_lock(project, ARTIFACT_PATHS)
    result = run_server_expecting_failure(
        tmp_path, STROKE_PROJECT_DIR=str(project), STROKE_TRUSTED_KEY=str(public)
    )
    assert "refused: unsigned" in one_line(result)


def test_without_a_key_the_service_says_authenticity_is_not_checked(
    project: Path, server_factory: Callable[..., Server]
) -> None:
    server = server_factory(STROKE_PROJECT_DIR=str(project))
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    assert "model authenticity is not checked (no STROKE_TRUSTED_KEY)" in server.log()


@pytest.mark.integration
def test_a_tampered_signature_does_not_verify(keys: dict, project: Path) -> None:
    private, public = keys["ours"]
    sign_into_releases(project, private)
    (record,) = json.loads((project / "releases.json").read_text())
    record["version"] = "9.9.9"  # the statement names the version: it no longer verifies
    with pytest.raises(SigningError, match="wrongly signed"):
        check_signed(
            [record],
            serving_model=(project / "models/serving_model.npz").read_bytes(),
            metadata=(project / "models/model_metadata.json").read_bytes(),
            public_key=load_public_key(public),
        )


@pytest.mark.integration
def test_keygen_refuses_a_path_inside_a_repository_and_an_existing_key(
    keys: dict, tmp_path: Path
) -> None:
    from stroke_risk.release.signing import keygen as make_key

    with pytest.raises(SigningError, match="inside the git work tree"):
        make_key(REPO_ROOT / "release.key")
    assert not (REPO_ROOT / "release.key").exists()
    with pytest.raises(SigningError, match="already exists"):
        make_key(keys["ours"][0])


def test_a_private_key_readable_by_others_is_refused(keys: dict, tmp_path: Path) -> None:
    copy = tmp_path / "loose.key"
    copy.write_bytes(keys["ours"][0].read_bytes())
    copy.chmod(0o644)
    with pytest.raises(SigningError, match="chmod 600"):
        load_private_key(copy)
