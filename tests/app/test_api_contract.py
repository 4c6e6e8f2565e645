"""The /predict, /health, /ready, /version, /metrics and /openapi.json contract (Flask app)."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import numpy as np
import pytest
from flask import Blueprint, Flask
from prometheus_client.core import GaugeMetricFamily

from app.factory import create_app
from app.model import LoadedModel
from app.openapi import openapi_document
from app.service_state import CALLBACKS_KEY, service_state
from app.settings import Settings
from stroke_risk.data.schema import record_json_schema
from tests.app.conftest import RECORD, TEST_THRESHOLD, served_version


@pytest.fixture
def app(logreg_settings: Settings, logreg_model: LoadedModel) -> Flask:
    return create_app(logreg_settings, model=logreg_model)


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture
def logreg_pipeline(fitted_pipelines: dict) -> Any:
    """The pipeline the logreg artifact was exported from (the service never loads it)."""
    return fitted_pipelines["logreg"]


def reference(pipeline: Any, records: list[dict[str, Any]]) -> np.ndarray:
    import pandas as pd

    frame = pd.DataFrame(records)
    frame["bmi"] = frame["bmi"].astype(float)
    return pipeline.predict_proba(frame)[:, 1]


def test_single_prediction_contract(
    logreg_pipeline: Any, client: Any, logreg_model: LoadedModel, logreg_settings: Settings
) -> None:
    response = client.post("/predict", json=RECORD)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    answer = response.json
    assert list(answer) == [
        "stroke_probability",
        "stroke_prediction",
        "threshold",
        "model_version",
        "prediction_id",
        "base_value",
        "risk_factors",
    ]
    assert isinstance(answer["stroke_probability"], float)
    assert 0.0 <= answer["stroke_probability"] <= 1.0
    assert answer["threshold"] == TEST_THRESHOLD
    assert answer["stroke_prediction"] is (answer["stroke_probability"] >= TEST_THRESHOLD)
    assert answer["model_version"] == served_version(logreg_settings)
    assert uuid.UUID(hex=answer["prediction_id"]).version == 7  # time-ordered
    assert abs(answer["stroke_probability"] - reference(logreg_pipeline, [RECORD])[0]) <= 1e-9
    assert isinstance(answer["base_value"], float)
    factors = answer["risk_factors"]
    assert len(factors) == logreg_settings.risk_factor_count == 3
    assert all(list(f) == ["feature", "value", "contribution"] for f in factors)
    assert all(f["value"] == RECORD[f["feature"]] for f in factors)
    sizes = [abs(f["contribution"]) for f in factors]
    assert sizes == sorted(sizes, reverse=True)


def test_explanations_can_be_left_out(client: Any) -> None:
    single = client.post("/predict?explain=false", json=RECORD).json
    assert set(single) == {
        "stroke_probability",
        "stroke_prediction",
        "threshold",
        "model_version",
        "prediction_id",
    }
    batch = client.post("/predict?explain=false", json={"instances": [RECORD] * 3}).json
    assert all("risk_factors" not in p and "base_value" not in p for p in batch["predictions"])
    explained = client.post("/predict?explain=true", json=RECORD).json
    assert explained["stroke_probability"] == single["stroke_probability"]
    assert len(explained["risk_factors"]) == 3


def test_decision_uses_the_model_threshold_not_one_half(client: Any) -> None:
    answers = [
        client.post("/predict", json={**RECORD, "age": float(age)}).json for age in range(20, 95, 5)
    ]
    for answer in answers:
        assert answer["stroke_prediction"] is (answer["stroke_probability"] >= TEST_THRESHOLD)
    probabilities = [answer["stroke_probability"] for answer in answers]
    # Patients between the threshold (0.08) and 0.5 are flagged: the cut is not 0.5.
    assert any(TEST_THRESHOLD <= p < 0.5 for p in probabilities)
    assert any(p < TEST_THRESHOLD for p in probabilities)


def test_bmi_may_be_null_or_absent_and_alias_is_accepted(
    logreg_pipeline: Any, client: Any, logreg_model: LoadedModel
) -> None:
    without = {k: v for k, v in RECORD.items() if k != "bmi"}
    null = {**RECORD, "bmi": None}
    alias = {("residence_type" if k == "Residence_type" else k): v for k, v in null.items()}
    answers = [client.post("/predict", json=r).json for r in (without, null, alias)]
    assert len({a["stroke_probability"] for a in answers}) == 1
    assert abs(answers[0]["stroke_probability"] - reference(logreg_pipeline, [null])[0]) <= 1e-9


def test_full_domain_is_scored(client: Any) -> None:
    """gender Other and work_type Never_worked are absent from brain.csv but valid."""
    response = client.post(
        "/predict", json={**RECORD, "gender": "Other", "work_type": "Never_worked"}
    )
    assert response.status_code == 200


def test_batch_answers_in_order_with_unique_ids(
    logreg_pipeline: Any, client: Any, logreg_model: LoadedModel
) -> None:
    instances = [{**RECORD, "age": float(age)} for age in range(20, 90, 7)]
    response = client.post("/predict", json={"instances": instances})
    assert response.status_code == 200
    predictions = response.json["predictions"]
    assert len(predictions) == len(instances)
    served = np.array([p["stroke_probability"] for p in predictions])
    assert np.max(np.abs(served - reference(logreg_pipeline, instances))) <= 1e-9
    ids = [p["prediction_id"] for p in predictions]
    assert len(set(ids)) == len(ids)
    # 32 hex digits; a batch's ids share a random 16-digit token and differ after it.
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    assert len({i[:16] for i in ids}) == 1 and len({i[16:] for i in ids}) == len(ids)


def test_batch_limit_is_configurable(logreg_settings: Settings, logreg_model: LoadedModel) -> None:
    client = create_app(logreg_settings.replace(max_batch_size=3), model=logreg_model).test_client()
    assert client.post("/predict", json={"instances": [RECORD] * 3}).status_code == 200
    assert client.post("/predict", json={"instances": [RECORD] * 4}).status_code == 413


def test_body_limit_is_configurable(logreg_settings: Settings, logreg_model: LoadedModel) -> None:
    client = create_app(
        logreg_settings.replace(max_body_bytes=500), model=logreg_model
    ).test_client()
    assert client.post("/predict", json=RECORD).status_code == 200
    response = client.post("/predict", json={"instances": [RECORD] * 3})
    assert response.status_code == 413 and response.json["error"]


def test_health_ready_and_version(client: Any, logreg_settings: Settings) -> None:
    assert client.get("/health").json == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    version = client.get("/version").json
    assert version["model_version"] == served_version(logreg_settings)
    assert version["model_family"] == "logreg"
    assert version["threshold"] == TEST_THRESHOLD
    assert version["training_metrics"] == {
        "test": {"roc_auc": 0.84, "recall": 0.8},
        "cv": {"roc_auc": 0.83},
    }
    assert version["inference"].startswith("compiled:")
    assert "git_commit" in version


def test_not_ready_without_a_model(logreg_settings: Settings) -> None:
    client = create_app(logreg_settings, load=False).test_client()
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 503
    response = client.post("/predict", json=RECORD)
    assert response.status_code == 503 and response.json["error"]


def test_openapi_is_generated_from_the_schema(client: Any, logreg_settings: Settings) -> None:
    document = client.get("/openapi.json").json
    assert document == openapi_document(
        logreg_settings.max_batch_size, logreg_settings.risk_factor_count, feedback=True
    )
    record = document["components"]["schemas"]["Record"]
    expected = record_json_schema()
    assert record["properties"] == expected["properties"]
    assert record["required"] == expected["required"]
    assert document["components"]["schemas"]["Batch"]["properties"]["instances"]["maxItems"] == 1000
    assert set(document["paths"]) == {
        "/predict",
        "/health",
        "/ready",
        "/version",
        "/metrics",
        "/openapi.json",
        "/feedback",  # live monitoring, a default extension
    }
    factors = document["components"]["schemas"]["Prediction"]["properties"]["risk_factors"]
    assert factors["minItems"] == factors["maxItems"] == logreg_settings.risk_factor_count
    explain = document["paths"]["/predict"]["post"]["parameters"][0]
    assert (explain["name"], explain["in"], explain["schema"]["type"]) == (
        "explain",
        "query",
        "boolean",
    )
    bare = create_app(logreg_settings, load=False).test_client().get("/openapi.json").json
    assert "/feedback" not in bare["paths"]  # no model: no monitoring, no /feedback


def metric_value(text: str, name: str, labels: str = "") -> float:
    """Return the value of one sample line of the exposition text (0 when absent)."""
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def test_metrics_count_requests_predictions_and_failures(client: Any) -> None:
    client.post("/predict", json={"instances": [RECORD] * 5})
    client.post("/predict", json={**RECORD, "age": 500, "gender": "x"})
    client.get("/nope")
    text = client.get("/metrics").data.decode()
    assert metric_value(text, "stroke_predicted_probability_count") == 5
    predicted = sum(
        metric_value(text, "stroke_predictions_total", f'predicted="{d}"')
        for d in ("positive", "negative")
    )
    assert predicted == 5
    assert (
        metric_value(
            text, "stroke_http_requests_total", 'endpoint="/predict",method="POST",status="200"'
        )
        == 1
    )
    assert (
        metric_value(
            text, "stroke_http_requests_total", 'endpoint="/predict",method="POST",status="400"'
        )
        == 1
    )
    assert (
        metric_value(
            text, "stroke_http_requests_total", 'endpoint="other",method="GET",status="404"'
        )
        == 1
    )
    assert metric_value(text, "stroke_validation_failures_total", 'field="age"') == 1
    assert metric_value(text, "stroke_validation_failures_total", 'field="gender"') == 1
    assert metric_value(text, "stroke_model_decision_threshold") == TEST_THRESHOLD
    assert "stroke_model_info{" in text and "stroke_http_request_duration_seconds_bucket" in text
    # positive rate = prevalence * recall + (1 - prevalence) * (1 - specificity)
    assert metric_value(text, "stroke_reference_positive_rate") == pytest.approx(
        0.05 * 0.8 + 0.95 * 0.3
    )


def test_prediction_callbacks_receive_each_scored_record(app: Flask, client: Any) -> None:
    received: list[tuple] = []
    app.config[CALLBACKS_KEY].append(lambda *args: received.append(args))
    app.config[CALLBACKS_KEY].append(lambda *args: 1 / 0)  # a broken monitor never fails /predict
    alias_record = {
        **{k: v for k, v in RECORD.items() if k != "Residence_type"},
        "residence_type": "Rural",
        "bmi": None,
    }
    response = client.post("/predict", json={"instances": [RECORD, alias_record]})
    assert response.status_code == 200
    records, probabilities, decisions, ids = received[0]
    predictions = response.json["predictions"]
    assert records[0] == RECORD
    assert records[1]["Residence_type"] == "Rural" and records[1]["bmi"] is None
    assert probabilities == [p["stroke_probability"] for p in predictions]
    assert decisions == [p["stroke_prediction"] for p in predictions]
    assert ids == [p["prediction_id"] for p in predictions]


def test_extensions_can_add_routes_and_collectors(
    logreg_settings: Settings, logreg_model: LoadedModel
) -> None:
    class DriftCollector:
        def collect(self):
            gauge = GaugeMetricFamily("stroke_drift_score", "test")
            gauge.add_metric([], 0.25)
            yield gauge

    def init(app: Flask) -> None:
        feedback = Blueprint("feedback", __name__)
        feedback.add_url_rule("/feedback", "feedback", lambda: {"ok": True}, methods=["POST"])
        app.register_blueprint(feedback)
        service_state(app).metrics.register_collector(DriftCollector())

    client = create_app(logreg_settings, model=logreg_model, extensions=[init]).test_client()
    assert client.post("/feedback").json == {"ok": True}
    assert "stroke_drift_score 0.25" in client.get("/metrics").data.decode()


def test_feature_values_are_never_logged(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = {**RECORD, "avg_glucose_level": 123.456789, "work_type": "SECRET_VALUE"}
    client.post("/predict", json=secret)
    client.post("/predict", json={**secret, "work_type": "Private"})
    client.post("/predict", data=b'{"age": 98.7654321', content_type="application/json")
    logged = caplog.text
    assert (
        "123.456789" not in logged and "SECRET_VALUE" not in logged and "98.7654321" not in logged
    )


def test_unexpected_errors_are_a_bare_json_500(
    app: Flask, client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = service_state(app).model

    secret = repr(7.77 * 11)  # built at run time, so it is not in any source line

    def explode(columns: Any) -> Any:
        raise RuntimeError(f"value {secret} leaked")

    monkeypatch.setattr(type(model), "score", lambda self, columns, explain: explode(columns))
    response = client.post("/predict", json=RECORD)
    assert response.status_code == 500
    assert response.json == {"error": "internal error", "details": []}
    assert secret not in caplog.text and "RuntimeError" in caplog.text
