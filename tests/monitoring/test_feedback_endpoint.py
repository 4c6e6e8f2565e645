"""POST /feedback on a minimal Flask app: status codes, error bodies and the counter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, Counter

from app.feedback import FEEDBACK_KEY, FeedbackState, feedback_blueprint
from app.prediction_writer import PredictionLogWriter
from stroke_risk.monitoring.prediction_log import PredictionLog, PredictionRecord


@pytest.fixture
def feedback_app(tmp_path: Path) -> tuple[Any, CollectorRegistry]:
    store = PredictionLog(tmp_path / "log.sqlite")
    store.record_predictions(
        [
            PredictionRecord(pid, {"age": 50.0}, 0.2, True, "v1")
            for pid in ("known", "other", "third")
        ]
    )
    registry = CollectorRegistry()
    counter = Counter("stroke_feedback_total", "feedback", ["outcome"], registry=registry)
    for outcome in ("accepted", "rejected"):
        counter.labels(outcome=outcome)
    app = Flask("feedback-test")
    app.extensions[FEEDBACK_KEY] = FeedbackState(
        PredictionLogWriter(store, model_version="v1"), counter
    )
    app.register_blueprint(feedback_blueprint)
    return app.test_client(), registry


def outcomes(registry: CollectorRegistry) -> dict[str, float | None]:
    return {
        o: registry.get_sample_value("stroke_feedback_total", {"outcome": o})
        for o in ("accepted", "rejected")
    }


def assert_error_body(body: dict[str, Any], fields: set[str]) -> None:
    assert isinstance(body["error"], str) and body["error"]
    assert {d["field"] for d in body["details"]} == fields
    assert all(isinstance(d["message"], str) and d["message"] for d in body["details"])


def test_accepts_feedback_once(feedback_app: tuple[Any, CollectorRegistry]) -> None:
    client, registry = feedback_app
    response = client.post("/feedback", json={"prediction_id": "known", "stroke": 1})
    assert response.status_code == 201
    assert response.get_json() == {"prediction_id": "known", "stroke": 1, "status": "recorded"}
    duplicate = client.post("/feedback", json={"prediction_id": "known", "stroke": 0})
    assert duplicate.status_code == 409
    assert_error_body(duplicate.get_json(), {"prediction_id"})
    assert outcomes(registry) == {"accepted": 1.0, "rejected": 1.0}


def test_unknown_prediction_is_404(feedback_app: tuple[Any, CollectorRegistry]) -> None:
    client, registry = feedback_app
    response = client.post("/feedback", json={"prediction_id": "never-made", "stroke": 0})
    assert response.status_code == 404
    assert_error_body(response.get_json(), {"prediction_id"})
    assert outcomes(registry)["rejected"] == 1.0


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"prediction_id": "known", "stroke": 2}, {"stroke"}),
        ({"prediction_id": "known", "stroke": True}, {"stroke"}),
        ({"prediction_id": "known", "stroke": "1"}, {"stroke"}),
        ({"prediction_id": "known", "stroke": 1.5}, {"stroke"}),
        ({"prediction_id": "known"}, {"stroke"}),
        ({"stroke": 1}, {"prediction_id"}),
        ({"prediction_id": 7, "stroke": 1}, {"prediction_id"}),
        ({"prediction_id": "", "stroke": 1}, {"prediction_id"}),
        ({"prediction_id": "x" * 201, "stroke": 1}, {"prediction_id"}),
        ({"prediction_id": "known", "stroke": 1, "label": 1}, {"label"}),
        ({}, {"prediction_id", "stroke"}),
        ([1, 2], {"(body)"}),
        ("text", {"(body)"}),
    ],
)
def test_invalid_bodies_list_every_problem(
    feedback_app: tuple[Any, CollectorRegistry], body: Any, fields: set[str]
) -> None:
    client, registry = feedback_app
    response = client.post("/feedback", json=body)
    assert response.status_code == 400
    assert_error_body(response.get_json(), fields)
    assert outcomes(registry) == {"accepted": 0.0, "rejected": 1.0}
    if isinstance(body, dict) and "stroke" in body and body["stroke"] not in (0, 1):
        # The message quotes the offending value.
        message = next(
            d["message"] for d in response.get_json()["details"] if d["field"] == "stroke"
        )
        assert f"got {json.dumps(body['stroke'])}" in message
    # Nothing was stored: valid feedback for the id still succeeds afterwards.
    assert client.post("/feedback", json={"prediction_id": "known", "stroke": 0}).status_code == 201


def test_wrong_content_type_is_415(feedback_app: tuple[Any, CollectorRegistry]) -> None:
    client, registry = feedback_app
    response = client.post(
        "/feedback",
        data="prediction_id=known&stroke=1",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 415
    assert_error_body(response.get_json(), {"Content-Type"})
    json_suffix = client.post(
        "/feedback", data='{"prediction_id": "known", "stroke": 1}', content_type="text/json"
    )
    assert json_suffix.status_code == 415
    assert outcomes(registry)["rejected"] == 2.0


def test_malformed_json_is_400(feedback_app: tuple[Any, CollectorRegistry]) -> None:
    client, _ = feedback_app
    response = client.post(
        "/feedback", data='{"prediction_id": "known",', content_type="application/json"
    )
    assert response.status_code == 400
    assert_error_body(response.get_json(), {"(body)"})


def test_only_post_is_routed(feedback_app: tuple[Any, CollectorRegistry]) -> None:
    client, _ = feedback_app
    assert client.get("/feedback").status_code == 405
