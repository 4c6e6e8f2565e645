"""A small stand-in for the real app, served by gunicorn in the Prometheus end-to-end test.

It exports the contract's request and model metrics (prometheus_client multiprocess mode,
as several gunicorn workers need), scores records with a fixed logistic stub instead of
the trained model, and wires live monitoring exactly as the real app is meant to:
``install_monitoring(...)`` once per worker, ``monitor.on_predictions(...)`` after scoring.

Environment: EXPORTER_STORE (prediction log path), EXPORTER_PROFILE (reference profile
JSON), PROMETHEUS_MULTIPROC_DIR, and the STROKE_MONITOR_* settings.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from stroke_risk.live_monitoring import MonitoringSettings, install_monitoring
from stroke_risk.schema import validate_record

DECISION_THRESHOLD = 0.05
REFERENCE_POSITIVE_RATE = 0.3

REQUESTS = Counter("stroke_http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
LATENCY = Histogram(
    "stroke_http_request_duration_seconds",
    "HTTP latency",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
PREDICTIONS = Counter("stroke_predictions_total", "Scored records", ["predicted"])
PROBABILITY = Histogram(
    "stroke_predicted_probability",
    "Predicted probability",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0),
)
VALIDATION_FAILURES = Counter("stroke_validation_failures_total", "Invalid fields", ["field"])
THRESHOLD = Gauge("stroke_model_decision_threshold", "Threshold", multiprocess_mode="max")
REFERENCE_RATE = Gauge("stroke_reference_positive_rate", "Reference rate", multiprocess_mode="max")
MODEL_INFO = Gauge(
    "stroke_model_info",
    "Model in service",
    ["model_version", "model_family", "git_commit"],
    multiprocess_mode="max",
)


def stub_probability(record: dict[str, Any]) -> float:
    """Older, hypertensive, hyperglycaemic patients score higher, like the real model."""
    logit = (
        -8.0
        + 0.075 * record["age"]
        + 0.6 * record["hypertension"]
        + 0.5 * record["heart_disease"]
        + 0.006 * record["avg_glucose_level"]
    )
    return 1.0 / (1.0 + math.exp(-logit))


def create_app() -> Flask:
    app = Flask("stroke-exporter")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    monitor = install_monitoring(
        app,
        store_path=os.environ["EXPORTER_STORE"],
        reference_profile=os.environ["EXPORTER_PROFILE"],
        decision_threshold=DECISION_THRESHOLD,
        settings=MonitoringSettings.from_environ(),
        registry=registry,
        multiprocess=True,
        model_version="stub-1",
    )
    THRESHOLD.set(DECISION_THRESHOLD)
    REFERENCE_RATE.set(REFERENCE_POSITIVE_RATE)
    MODEL_INFO.labels("stub-1", "logistic_stub", "0000000").set(1)
    for outcome in ("positive", "negative"):
        PREDICTIONS.labels(predicted=outcome)

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def count_request(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "other"
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        LATENCY.labels(endpoint).observe(time.perf_counter() - g.started)
        # Lets the test see which worker answered.
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.post("/predict")
    def predict() -> tuple[Response, int]:
        body = request.get_json(silent=True)
        batch = isinstance(body, dict) and "instances" in body
        raw_records = body["instances"] if batch else [body]
        validations = [validate_record(r) for r in raw_records]
        problems = [e for v in validations for e in v.errors]
        if problems:
            for problem in problems:
                VALIDATION_FAILURES.labels(field=problem.field).inc()
            details = [p.as_dict() for p in problems]
            return jsonify({"error": "invalid record", "details": details}), 400
        records = [v.values for v in validations]
        probabilities = [stub_probability(r) for r in records]
        decisions = [p >= DECISION_THRESHOLD for p in probabilities]
        ids = [uuid.uuid4().hex for _ in records]
        for probability, decision in zip(probabilities, decisions, strict=True):
            PROBABILITY.observe(probability)
            PREDICTIONS.labels(predicted="positive" if decision else "negative").inc()
        monitor.on_predictions(records, probabilities, decisions, ids)
        results = [
            {"prediction_id": i, "stroke_probability": p, "stroke_prediction": d}
            for i, p, d in zip(ids, probabilities, decisions, strict=True)
        ]
        return jsonify({"predictions": results} if batch else results[0]), 200

    return app
