"""``POST /feedback``: the true outcome of a prediction, recorded in the prediction log.

Validated by app.api_models.Feedback and answered in the app's own error format
(app/responses.py); rate-limited per credential. An id that may still be on its way to
the log (in a worker's buffer, or in a large batch logged after its response) is waited
for briefly; any other unknown id is refused at once. Every answer increments
``stroke_feedback_total{outcome="accepted"|"rejected"}``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask_limiter import Limiter
from prometheus_client import CollectorRegistry, Counter

from app.api_models import parse_feedback
from app.auth import current_credential_name
from app.ids import prediction_id_age_seconds
from app.payload import RequestError, parse_json
from app.prediction_writer import FEEDBACK_GRACE_SECONDS, PredictionLogWriter
from app.responses import error_response, is_json_request, json_response
from app.settings import Settings
from stroke_risk.monitoring.log_backend import STORE_ERRORS
from stroke_risk.monitoring.prediction_log import DuplicateFeedbackError, UnknownPredictionError

logger = logging.getLogger(__name__)

FEEDBACK_KEY = "stroke_feedback"
# How often feedback for an id on its way to the log looks for it (read-only polls).
FEEDBACK_POLL_SECONDS = 0.02

feedback_blueprint = Blueprint("stroke_feedback", __name__)


@dataclass(frozen=True)
class FeedbackState:
    """What /feedback uses: the prediction-log writer and the counter of its answers."""

    writer: PredictionLogWriter
    outcomes: Counter


def current_feedback() -> FeedbackState:
    return current_app.extensions[FEEDBACK_KEY]


def record_feedback(
    writer: PredictionLogWriter, prediction_id: str, label: int, labelled_by: str | None = None
) -> int:
    """Record the label; an id that may still be on its way to the log is waited for.

    An unknown id is looked for again after this worker's buffer is written. It is
    waited for (read-only polls, up to FEEDBACK_GRACE_SECONDS) only while it can still
    be in another worker's buffer (issued less than FEEDBACK_GRACE_SECONDS ago, its
    time is in the id) or in a large batch being logged; any other unknown id fails at
    once (one indexed read, no write lock, no sleep), so bogus feedback costs no more
    than a normal request.
    """
    store = writer.store
    try:
        return store.record_feedback(prediction_id, label, labelled_by=labelled_by)
    except UnknownPredictionError:
        # Only a prediction this worker holds is worth a write now: bogus ids never write.
        if writer.holds(prediction_id) and writer.flush():
            try:
                return store.record_feedback(prediction_id, label, labelled_by=labelled_by)
            except UnknownPredictionError:
                pass
        age = prediction_id_age_seconds(prediction_id)
        recent = age is not None and -1.0 <= age <= FEEDBACK_GRACE_SECONDS
        if not (recent and writer.flush_seconds > 0) and not store.is_pending(prediction_id):
            raise
    deadline = time.monotonic() + FEEDBACK_GRACE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(FEEDBACK_POLL_SECONDS)
        try:
            store.stored_label(prediction_id)
        except UnknownPredictionError:
            age = prediction_id_age_seconds(prediction_id)
            if (age is None or age > FEEDBACK_GRACE_SECONDS) and not store.is_pending(
                prediction_id
            ):
                break
            continue
        return store.record_feedback(prediction_id, label, labelled_by=labelled_by)
    return store.record_feedback(prediction_id, label, labelled_by=labelled_by)


@feedback_blueprint.post("/feedback")
def feedback() -> Response:
    """Record the true outcome of a prediction: 201, or 400/404/409/415/503 (app errors).

    Every answer increments ``stroke_feedback_total{outcome="accepted"|"rejected"}``.
    """
    state = current_feedback()
    response = feedback_response(state.writer)
    outcome = "accepted" if response.status_code == 201 else "rejected"
    state.outcomes.labels(outcome=outcome).inc()
    return response


def feedback_response(writer: PredictionLogWriter) -> Response:
    if not is_json_request():
        given = (request.content_type or "none")[:80]
        return error_response(
            415,
            "unsupported content type",
            [{"field": "Content-Type", "message": f"must be application/json, got {given!r}"}],
        )
    try:
        document = parse_json(request.get_data(cache=False))
    except RequestError as problem:  # malformed JSON or a key given twice
        return error_response(problem.status, problem.error, problem.details)
    try:
        body = parse_feedback(document)
    except ValueError as problems:
        return error_response(400, "invalid feedback", problems.args[0])
    try:
        label = record_feedback(
            writer, body.prediction_id, body.stroke, labelled_by=current_credential_name()
        )
    except UnknownPredictionError:
        return error_response(
            404,
            "unknown prediction",
            [{"field": "prediction_id", "message": "no prediction with this id is stored"}],
        )
    except DuplicateFeedbackError:
        return error_response(
            409,
            "duplicate feedback",
            [
                {
                    "field": "prediction_id",
                    "message": "feedback for this prediction was already recorded",
                }
            ],
        )
    except STORE_ERRORS as error:
        logger.warning("feedback: prediction log unavailable (%s)", type(error).__name__)
        return error_response(
            503, "feedback store unavailable", [{"field": "(store)", "message": "try again later"}]
        )
    return json_response(
        {"prediction_id": body.prediction_id, "stroke": label, "status": "recorded"}, 201
    )


def limit_feedback(app: Flask, settings: Settings) -> Limiter:
    """Rate-limit POST /feedback per credential (Flask-Limiter; 429 as JSON).

    Counted in settings.rate_limit_storage: memory:// counts in each worker process (the
    service as a whole then admits up to workers x the limit); a redis:// or
    memcached:// storage shared by the workers (and replicas) makes it one limit.
    """
    limiter = Limiter(
        current_credential_name,
        app=app,
        storage_uri=settings.rate_limit_storage,
        default_limits=[],
        headers_enabled=False,
    )
    # The limit of the blueprint applies to its one route, /feedback, in this app only.
    limiter.limit(settings.feedback_rate_limit)(feedback_blueprint)
    # Flask-Limiter hooks into every request of the app; resolving that no limit applies
    # cost /predict more than validating its record. Its hooks run for /feedback only.
    scope_hooks_to_blueprint(app, limiter, feedback_blueprint.name)
    return limiter


def scope_hooks_to_blueprint(app: Flask, owner: object, blueprint_name: str) -> None:
    """Make the request hooks that owner registered on the whole app (its bound methods,
    or partials bound to it) run only for requests of blueprint_name.

    Flask runs a blueprint's before_request hooks after the app's own (authentication
    first, as before) and its after_request and teardown hooks around the app's.
    """

    def registered_by_owner(hook: object) -> bool:
        if getattr(hook, "__self__", None) is owner:
            return True
        return isinstance(hook, partial) and any(argument is owner for argument in hook.args)

    registries: tuple[dict[Any, list[Any]], ...] = (
        app.before_request_funcs,
        app.after_request_funcs,
        app.teardown_request_funcs,
    )
    for hooks in registries:
        app_wide = hooks.get(None, [])
        moved = [hook for hook in app_wide if registered_by_owner(hook)]
        if not moved:
            raise RuntimeError(f"{owner!r} registered no app-wide request hook to move")
        hooks[None] = [hook for hook in app_wide if not registered_by_owner(hook)]
        hooks.setdefault(blueprint_name, []).extend(moved)


def install_feedback(
    app: Flask,
    writer: PredictionLogWriter,
    *,
    settings: Settings,
    registry: CollectorRegistry | None,
    multiprocess: bool = False,
) -> FeedbackState:
    """Mount the rate-limited POST /feedback on app, recording labels through writer.

    The feedback counter is left unregistered in prometheus_client multiprocess mode (the
    MultiProcessCollector exports it from the shared files).
    """
    outcomes = Counter(
        "stroke_feedback_total",
        "Feedback requests by outcome",
        ["outcome"],
        registry=None if multiprocess else registry,
    )
    for outcome in ("accepted", "rejected"):
        outcomes.labels(outcome=outcome)  # export zeros before the first request
    state = FeedbackState(writer, outcomes)
    app.extensions[FEEDBACK_KEY] = state
    app.register_blueprint(feedback_blueprint)
    limit_feedback(app, settings)
    return state
