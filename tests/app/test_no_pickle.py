"""No model file can run code in the service: it loads the data-only serving artifact only.

A pickle whose unpickling writes a marker file is planted where the service could take a
model from in the workspace (models/model.joblib, models/serving_model.npz, an object array
inside a real .npz), each time with its md5 written into dvc.lock so the integrity check
passes; the real gunicorn server either ignores it or refuses it in one line, and the marker
never appears. (The DVC run cache and remote: tests/pipeline/test_trust.py.) The pipeline
stages still load the pickles they wrote themselves (evaluate, report, MLflow's pyfunc).
"""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import requests

from app.artifacts import ArtifactError
from app.model import load_model
from app.settings import Settings
from tests.app.conftest import (
    ARTIFACT_PATHS,
    FAMILIES,
    RECORD,
    Server,
    run_server_expecting_failure,
    write_lock,
)


class Exploit:
    """Unpickling this writes `marker`: the side effect a planted model would have."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> Any:
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).write_text('ran')",))


def exploit_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(Exploit(marker), buffer)
    return buffer.getvalue()


def npz_with_object_array(marker: Path, genuine: bytes) -> bytes:
    """A real serving artifact whose header entry is replaced by a pickled object array."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(genuine)) as source, zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "header.npy":
                entry = io.BytesIO()
                array = np.empty(1, dtype=object)
                array[0] = Exploit(marker)
                np.save(entry, array, allow_pickle=True)
                data = entry.getvalue()
            target.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def project_copy(logreg_settings: Settings, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(logreg_settings.project_dir, root)
    return root


def one_line(result: Any) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_loading_a_model_never_unpickles(
    family: str, project_factory: Callable[[str], Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every unpickling entry point raises while the service loads a model: none is used."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the service tried to unpickle")

    settings = project_factory(family)
    for module, name in [
        (pickle, "load"),
        (pickle, "loads"),
        (pickle, "Unpickler"),
        (joblib, "load"),
    ]:
        monkeypatch.setattr(module, name, forbidden)
    model = load_model(settings)
    assert model.scorer.kind.startswith("compiled:")
    assert model.explainer is not None


def test_a_pickle_as_the_pipeline_file_is_never_read(
    project_copy: Path, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    """models/model.joblib with its md5 in dvc.lock: the service serves without touching it."""
    marker = tmp_path / "ran-from-model-joblib"
    (project_copy / "models" / "model.joblib").write_bytes(exploit_bytes(marker))
    write_lock(project_copy, [*ARTIFACT_PATHS, "models/model.joblib"])
    server = server_factory(STROKE_PROJECT_DIR=str(project_copy))
    answer = requests.post(f"{server.url}/predict", json=RECORD, timeout=5)
    assert answer.status_code == 200
    server.stop()
    assert not marker.exists()


@pytest.mark.integration  # runs gunicorn, which must refuse to start
@pytest.mark.parametrize("planted", ["pickle", "object_array"])
def test_a_pickle_as_the_serving_artifact_is_refused_in_one_line(
    planted: str, project_copy: Path, tmp_path: Path
) -> None:
    """models/serving_model.npz replaced by a pickle (or a real .npz whose header is a
    pickled object array), its md5 written into dvc.lock: refused, never unpickled."""
    marker = tmp_path / f"ran-from-{planted}"
    artifact = project_copy / "models" / "serving_model.npz"
    data = (
        exploit_bytes(marker)
        if planted == "pickle"
        else npz_with_object_array(marker, artifact.read_bytes())
    )
    artifact.write_bytes(data)
    write_lock(project_copy, ARTIFACT_PATHS)
    result = run_server_expecting_failure(tmp_path, STROKE_PROJECT_DIR=str(project_copy))
    line = one_line(result)
    assert "models/serving_model.npz cannot be served" in line and "make run" in line, line
    assert not marker.exists()


def test_the_object_array_is_refused_by_the_reader_itself(
    project_copy: Path, tmp_path: Path
) -> None:
    """The same check in-process, so the refusal is numpy's allow_pickle=False, not luck."""
    marker = tmp_path / "ran-in-process"
    artifact = project_copy / "models" / "serving_model.npz"
    artifact.write_bytes(npz_with_object_array(marker, artifact.read_bytes()))
    write_lock(project_copy, ARTIFACT_PATHS)
    with pytest.raises(ArtifactError, match="Object arrays cannot be loaded"):
        load_model(Settings.for_project(project_copy))
    assert not marker.exists()
