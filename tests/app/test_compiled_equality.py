"""The compiled fast path equals the reference pipeline on every row of both shipped CSVs."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest

from app import compiled
from app.compiled import (
    TOLERANCE,
    ReferenceModel,
    UnsupportedPipeline,
    artifact_of_pipeline,
    compile_pipeline,
    probe_columns,
)
from app.factory import create_app
from app.model import build_scorer, load_model
from app.validation import validate_records
from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.models import tree_tables
from tests.app.conftest import FAMILIES, frame_records, served_paths


def reference_probability(pipeline: Any, frame: pd.DataFrame) -> np.ndarray:
    return pipeline.predict_proba(frame[list(FEATURE_NAMES)])[:, 1]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("csv_name", ["brain", "healthcare"])
def test_compiled_path_equals_pipeline_on_every_row(
    family: str, csv_name: str, fitted_pipelines: dict, shipped_frames: dict
) -> None:
    pipeline = fitted_pipelines[family]
    frame = shipped_frames[csv_name]
    scorer, _ = served_paths(pipeline)
    validation = validate_records(frame_records(frame))
    assert validation.ok
    served = scorer.predict_proba(validation.columns)
    expected = reference_probability(pipeline, frame)
    assert served.shape == expected.shape == (len(frame),)
    assert np.max(np.abs(served - expected)) <= TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_served_http_batches_equal_pipeline(
    family: str, project_factory: Any, fitted_pipelines: dict, shipped_frames: dict
) -> None:
    """Through the Flask app: 1000-record batches and single records, both CSVs."""
    settings = project_factory(family)
    client = create_app(settings, model=load_model(settings)).test_client()
    pipeline = fitted_pipelines[family]
    for frame in shipped_frames.values():
        records = frame_records(frame)
        served: list[float] = []
        for start in range(0, len(records), 1000):
            response = client.post("/predict", json={"instances": records[start : start + 1000]})
            assert response.status_code == 200, response.json
            served += [p["stroke_probability"] for p in response.json["predictions"]]
        expected = reference_probability(pipeline, frame)
        assert np.max(np.abs(np.array(served) - expected)) <= TOLERANCE
        for row in (0, 1, len(records) - 1):
            single = client.post("/predict", json=records[row]).json
            assert abs(single["stroke_probability"] - expected[row]) <= TOLERANCE


def test_forest_vector_and_per_tree_walks_agree(
    fitted_pipelines: dict, shipped_frames: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = fitted_pipelines["random_forest"]
    frame = shipped_frames["healthcare"]
    columns = validate_records(frame_records(frame)).columns
    model = compile_pipeline(pipeline)
    monkeypatch.setattr(tree_tables, "FOREST_BLOCK_ELEMENTS", 10**12)
    vectorised = model.predict_proba(columns)
    monkeypatch.setattr(tree_tables, "FOREST_BLOCK_ELEMENTS", 0)  # one row at a time
    per_tree = model.predict_proba(columns)
    expected = reference_probability(pipeline, frame)
    assert np.max(np.abs(vectorised - expected)) <= TOLERANCE
    assert np.max(np.abs(per_tree - expected)) <= TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_probe_batch_covers_the_full_domain(family: str, fitted_pipelines: dict) -> None:
    """Categories brain.csv lacks (gender Other, Never_worked) and missing bmi are scored."""
    pipeline = fitted_pipelines[family]
    model = compile_pipeline(pipeline)
    probe = probe_columns(model.engineer)
    frame = probe.to_frame()
    assert {"Other"} <= set(frame["gender"]) and {"Never_worked"} <= set(frame["work_type"])
    assert frame["bmi"].isna().any()
    difference = np.abs(model.predict_proba(probe) - ReferenceModel(pipeline).predict_proba(probe))
    assert np.max(difference) <= TOLERANCE


def test_an_unsupported_step_cannot_be_exported(fitted_pipelines: dict) -> None:
    """The train stage fails (one line) rather than write an artifact it cannot express."""
    from sklearn.preprocessing import MinMaxScaler

    pipeline = copy.deepcopy(fitted_pipelines["logreg"])
    transformer = pipeline.named_steps["preprocess"]
    name, numeric, columns = transformer.transformers_[0]
    scaler = MinMaxScaler().fit(np.zeros((2, len(columns))))
    transformer.transformers_[0] = (name, scaler, columns)
    with pytest.raises(UnsupportedPipeline, match="column transformer step MinMaxScaler"):
        compile_pipeline(pipeline)


def test_disagreeing_compiled_path_is_not_served(
    fitted_pipelines: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the served path ever drifted from the pipeline's recorded probabilities, the
    service would refuse to start (load_model turns this into one ArtifactError line)."""
    model = artifact_of_pipeline(fitted_pipelines["logreg"])
    original = compiled.estimator_scorer

    def skewed(estimator: Any) -> Any:
        kind, scorer = original(estimator)
        return kind, lambda X: scorer(X) + 1e-6

    monkeypatch.setattr(compiled, "estimator_scorer", skewed)
    with pytest.raises(UnsupportedPipeline, match="recorded probabilities"):
        build_scorer(model)


def test_real_model_is_served_by_the_compiled_path(repo_root: Any) -> None:
    """The model `dvc repro` produced compiles (so /predict is fast) and is verified."""
    from app.settings import Settings

    model = load_model(Settings.for_project(repo_root))
    assert model.scorer.kind.startswith("compiled:")
