"""The service names the release it serves (releases.json) in /version and stroke_model_info."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from app.factory import create_app
from app.model import load_model
from app.settings import Settings
from tests.app.conftest import served_version

MODEL_INFO = "stroke_model_info"


def md5(path: Any) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def served_release(settings: Settings) -> tuple[str, str]:
    """Return (release in /version, release label of stroke_model_info) of a fresh app."""
    app = create_app(settings, model=load_model(settings), extensions=())
    client = app.test_client()
    version = client.get("/version").json
    lines = [
        line
        for line in client.get("/metrics").data.decode().splitlines()
        if line.startswith(MODEL_INFO + "{")
    ]
    assert len(lines) == 1, lines
    label = lines[0].split('release="', 1)[1].split('"', 1)[0]
    return version["release"], label


@pytest.fixture
def project(project_factory: Callable[[str], Settings]) -> Settings:
    return project_factory("logreg")


def release_record(version: str, model_md5: str, metadata_md5: str | None) -> dict[str, Any]:
    return {"version": version, "model_md5": model_md5, "metadata_md5": metadata_md5}


def test_no_releases_file_is_unreleased(project: Settings) -> None:
    assert not project.releases_path.exists()
    assert served_release(project) == ("unreleased", "unreleased")


def test_the_newest_release_of_this_model_and_metadata_is_reported(project: Settings) -> None:
    model_md5, metadata_md5 = served_version(project), md5(project.metadata_path)
    releases = [
        release_record("1.3.0", "0" * 32, None),  # another model
        release_record("1.2.0", model_md5, metadata_md5),
        release_record("1.1.0", model_md5, metadata_md5),
    ]
    project.releases_path.write_text(json.dumps(releases))
    assert served_release(project) == ("1.2.0", "1.2.0")


def test_the_same_model_with_another_threshold_is_not_that_release(project: Settings) -> None:
    model_md5 = served_version(project)
    project.releases_path.write_text(json.dumps([release_record("2.0.0", model_md5, "f" * 32)]))
    assert served_release(project) == ("unreleased", "unreleased")


@pytest.mark.parametrize("text", ["{not json", '{"releases": []}', '[{"version": "1.0.0"}]'])
def test_a_malformed_releases_file_is_logged_and_served_as_unreleased(
    project: Settings, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    project.releases_path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="app.artifacts"):
        assert served_release(project) == ("unreleased", "unreleased")
    warnings = [r.getMessage() for r in caplog.records if r.name == "app.artifacts"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "releases.json" in warnings[0]


def test_the_repository_releases_file_is_valid_and_shipped_in_the_image(
    repo_root: Any,
) -> None:
    from stroke_risk.release.publish import read_releases

    assert isinstance(read_releases((repo_root / "releases.json").read_text()), list)
    assert "COPY releases.json" in (repo_root / "Dockerfile").read_text()
