"""Risk factors in /predict (issue #5): exact for every model family, on every shipped row."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from app.explanations import risk_factor_lists, served_log_odds
from app.factory import create_app
from app.model import load_model
from app.settings import Settings
from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.models.explain import (
    MatrixExplainer,
    PipelineExplainer,
    explain_prediction,
    model_logit,
    top_risk_factors_batch,
)
from stroke_risk.models.families import FAMILIES as FAMILY_RECORDS
from tests.app.conftest import FAMILIES, RECORD, frame_records

# What the issue asks: base + contributions equals the served log-odds within this.
ADDITIVITY = 1e-6


def all_factors_app(settings: Settings, **overrides: Any) -> Any:
    """The API alone, listing all ten fields so the contributions can be summed."""
    settings = settings.replace(risk_factor_count=len(FEATURE_NAMES), **overrides)
    return create_app(settings, model=load_model(settings), extensions=())


def log_odds(probability: float) -> float:
    return float(np.log(probability) - np.log1p(-probability))


@pytest.mark.parametrize("family", FAMILIES)
def test_served_contributions_add_up_to_the_served_log_odds(
    family: str, project_factory: Any, fitted_pipelines: dict, shipped_frames: dict
) -> None:
    """Every row of both CSVs, in 1000-record batches: base_value + the ten contributions
    is log(p / (1 - p)) of the served probability (forests: p clipped to [1e-6, 1 - 1e-6]),
    and the contributions are those stroke_risk.models.explain computes from the pipeline itself."""
    client = all_factors_app(project_factory(family)).test_client()
    pipeline = fitted_pipelines[family]
    clip = FAMILY_RECORDS[family].export.kind == "forest"  # the explainer clips p
    for frame in shipped_frames.values():
        records = frame_records(frame)
        served: list[dict[str, Any]] = []
        for start in range(0, len(records), 1000):
            response = client.post("/predict", json={"instances": records[start : start + 1000]})
            assert response.status_code == 200
            served += response.json["predictions"]
        probability = np.array([p["stroke_probability"] for p in served])
        if clip:
            probability = np.clip(probability, 1e-6, 1 - 1e-6)
        served_logit = np.log(probability) - np.log1p(-probability)
        base = {p["base_value"] for p in served}
        assert len(base) == 1
        contributions = np.array([[f["contribution"] for f in p["risk_factors"]] for p in served])
        assert np.max(np.abs(base.pop() + contributions.sum(axis=1) - served_logit)) <= ADDITIVITY
        # The same contributions the library computes from the pipeline on a DataFrame.
        local = explain_prediction(pipeline, frame[list(FEATURE_NAMES)])
        expected = top_risk_factors_batch(local, records, k=len(FEATURE_NAMES))
        for answer, wanted in zip(served, expected, strict=True):
            factors = answer["risk_factors"]
            sizes = [abs(f["contribution"]) for f in factors]
            assert sizes == sorted(sizes, reverse=True)
            by_field = {f["feature"]: f for f in factors}
            assert len(by_field) == len(FEATURE_NAMES)
            for item in wanted:
                assert by_field[item["feature"]]["value"] == item["value"]
                difference = by_field[item["feature"]]["contribution"] - item["contribution"]
                assert abs(difference) <= 1e-9


@pytest.mark.parametrize("family", FAMILIES)
def test_single_records_add_up_too(family: str, project_factory: Any) -> None:
    settings = project_factory(family)
    client = all_factors_app(settings).test_client()
    for record in (RECORD, {**RECORD, "bmi": None, "age": 3.0, "work_type": "children"}):
        answer = client.post("/predict", json=record).json
        probability = answer["stroke_probability"]
        if FAMILY_RECORDS[family].export.kind == "forest":
            probability = min(max(probability, 1e-6), 1 - 1e-6)
        total = answer["base_value"] + sum(f["contribution"] for f in answer["risk_factors"])
        assert abs(total - log_odds(probability)) <= ADDITIVITY
        assert {f["feature"] for f in answer["risk_factors"]} == set(FEATURE_NAMES)
        missing_bmi = [f for f in answer["risk_factors"] if f["feature"] == "bmi"]
        assert missing_bmi[0]["value"] == record["bmi"]


def test_risk_factor_lists_equal_the_library_ranking() -> None:
    """The vectorised lists are top_risk_factors_batch's, ties included (schema order)."""
    rng = np.random.default_rng(0)
    contributions = rng.normal(size=(200, len(FEATURE_NAMES)))
    contributions[:20, 3:6] = 0.5  # ties
    contributions[20:30] = 0.0
    records = [{name: f"{name}-{row}" for name in FEATURE_NAMES} for row in range(200)]
    explanation = type("E", (), {"contributions": contributions, "feature_names": FEATURE_NAMES})()
    for count in (1, 3, 10):
        assert risk_factor_lists(contributions, records, count) == top_risk_factors_batch(
            explanation,  # type: ignore[arg-type]
            records,
            count,
        )


def test_the_count_is_configurable(logreg_settings: Settings) -> None:
    settings = logreg_settings.replace(risk_factor_count=1)
    client = create_app(settings, model=load_model(settings), extensions=()).test_client()
    assert len(client.post("/predict", json=RECORD).json["risk_factors"]) == 1
    document = client.get("/openapi.json").json
    factors = document["components"]["schemas"]["Prediction"]["properties"]["risk_factors"]
    assert factors["maxItems"] == 1


def test_a_bad_explain_flag_is_counted_as_a_query_failure(logreg_settings: Settings) -> None:
    model = load_model(logreg_settings)
    client = create_app(logreg_settings, model=model, extensions=()).test_client()
    assert client.post("/predict?explain=1", json=RECORD).status_code == 400
    text = client.get("/metrics").data.decode()
    assert 'stroke_validation_failures_total{field="(query)"} 1.0' in text


def test_explanations_that_do_not_add_up_are_not_served(
    logreg_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A model whose explanations miss the served log-odds answers without risk factors."""
    original = MatrixExplainer.explain_matrix

    def skewed(self: MatrixExplainer, matrix: np.ndarray, probability: Any = None) -> Any:
        explanation = original(self, matrix, probability)
        return replace(explanation, logit=explanation.logit + 1e-3)

    monkeypatch.setattr(MatrixExplainer, "explain_matrix", skewed)
    caplog.set_level(logging.WARNING)
    model = load_model(logreg_settings)
    assert model.explainer is None
    assert "serving without risk factors" in caplog.text
    client = create_app(logreg_settings, model=model, extensions=()).test_client()
    answer = client.post("/predict", json=RECORD).json
    assert "risk_factors" not in answer and "base_value" not in answer
    assert client.get("/version").json["explanations"] is False


def test_a_model_family_without_explanations_is_served_without_them(
    logreg_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(self: MatrixExplainer, sources: Any, tables: Any) -> None:
        raise TypeError("no explanation method for model type Other")

    monkeypatch.setattr(MatrixExplainer, "__init__", unsupported)
    model = load_model(logreg_settings)
    assert model.explainer is None
    client = create_app(logreg_settings, model=model, extensions=()).test_client()
    response = client.post("/predict", json=RECORD)
    assert response.status_code == 200 and "risk_factors" not in response.json


def test_served_log_odds_clips_forest_probabilities_only(fitted_pipelines: dict) -> None:
    probability = np.array([0.0, 0.25, 1.0])
    forest = PipelineExplainer(fitted_pipelines["random_forest"])
    logistic = PipelineExplainer(fitted_pipelines["logreg"])
    assert np.isfinite(served_log_odds(probability, forest)).all()
    assert np.isinf(served_log_odds(probability, logistic)[[0, 2]]).all()
    frame = pd.DataFrame([RECORD])[list(FEATURE_NAMES)]
    expected = model_logit(fitted_pipelines["random_forest"], frame)
    served = fitted_pipelines["random_forest"].predict_proba(frame)[:, 1]
    assert np.allclose(served_log_odds(served, forest), expected)
