"""The Flask application factory: routes, JSON errors, metrics and extension hooks.

By default the app is the whole service: the API (this module), the clinician page at
``/`` with its assets under ``/static`` (app/page.py) and live monitoring with
``POST /feedback`` (app/monitoring.py). Extension points:

- ``extensions``: callables ``init(app)`` run at the end of create_app (default:
  DEFAULT_EXTENSIONS), then the "module:function" strings in STROKE_EXTENSIONS; they may
  register blueprints and Prometheus collectors via
  ``service_state(app).metrics.register_collector``. An extension refuses to start the
  server by raising app.artifacts.ArtifactError or app.settings.SettingsError (one line).
- ``app.config[CALLBACKS_KEY]`` (app/service_state.py): callables
  ``on_predictions(records, probabilities, decisions, prediction_ids)`` run after every
  successful /predict, inside the request context (``service_state(current_app).model``
  gives the model version) -- except for batches of DEFERRED_CALLBACK_MIN_RECORDS or
  more, where they run after the response has been sent, outside the request context.
  records are dicts of the ten canonical fields (bmi None when missing), the rest are
  lists in the same order. A failing callback is logged, never
  fails the prediction. A callback with a ``defer(records, probabilities, decisions,
  prediction_ids)`` method is told before a large batch's response is sent that its
  call will come after the response (the prediction log journals the batch then).
"""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app.artifacts import ArtifactError
from app.auth import auth_state, init_auth
from app.body_deadline import bound_body_reads
from app.explanations import risk_factor_lists
from app.ids import new_prediction_ids
from app.metrics import ServiceMetrics
from app.model import LoadedModel, load_model
from app.monitoring import init_monitoring
from app.openapi import openapi_document
from app.page import init_page
from app.payload import EXPLAIN_PARAMETER, RequestError, parse_explain, parse_predict_request
from app.responses import error_response, is_json_request, json_response
from app.service_state import (
    CALLBACKS_KEY,
    DEFERRED_CALLBACK_MIN_RECORDS,
    STATE_KEY,
    PredictionCallback,
    ServiceState,
    service_state,
)
from app.settings import Settings, SettingsError
from app.validation import metric_field

if TYPE_CHECKING:  # the standard WSGI types (typeshed), as Flask.wsgi_app declares them
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

Extension = Callable[[Flask], None]

# On every answer of the API: its JSON echoes patient values, so no cache may keep it and
# no browser may sniff it into something else.
API_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

# The full service: the clinician page and live monitoring.
DEFAULT_EXTENSIONS: tuple[Extension, ...] = (init_page, init_monitoring)


class ServiceFlask(Flask):
    """Flask whose request bodies are read under a deadline (app/body_deadline.py)."""

    def __init__(self, import_name: str, *, body_timeout_seconds: float, **options: Any) -> None:
        super().__init__(import_name, **options)
        self.body_timeout_seconds = body_timeout_seconds

    def wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        bound_body_reads(environ, self.body_timeout_seconds)
        return super().wsgi_app(environ, start_response)


class ServiceStartError(RuntimeError):
    """The server cannot start; str() is one line (gunicorn prints it as "Error: ...")."""


def install_model(app: Flask, model: LoadedModel) -> None:
    """Make model answer requests (and /ready report ready) and publish its gauges."""
    state = service_state(app)
    state.metrics.set_model(
        model.version,
        model.family,
        model.git_commit,
        model.threshold,
        model.reference_positive_rate(),
        model.release,
    )
    state.model = model


# --- endpoints -------------------------------------------------------------------------

api = Blueprint("api", __name__)


@api.post("/predict")
def predict() -> Response:
    """Score one record or {"instances": [...]} at the model's decision threshold.

    Each prediction also gets base_value and its risk_factors unless ?explain=false.
    """
    state = service_state(current_app)
    model = state.model
    if model is None:
        return error_response(503, "model not loaded yet; retry shortly")
    if not is_json_request():
        given = (request.content_type or "none")[:80]
        return error_response(
            415,
            "unsupported content type",
            [{"field": "Content-Type", "message": f"must be application/json, got {given!r}"}],
        )
    explain = parse_explain(request.args.get(EXPLAIN_PARAMETER))
    body = read_body(state.settings.max_body_bytes)
    parsed = parse_predict_request(body, state.settings.max_batch_size)
    scores = model.score(parsed.columns, explain=explain)
    prediction_ids = new_prediction_ids(parsed.columns.n_rows)
    state.metrics.observe_predictions(scores.probability, scores.decision)
    probabilities, decisions = scores.probability.tolist(), scores.decision.tolist()
    callbacks: list[PredictionCallback] = current_app.config[CALLBACKS_KEY]
    explained = scores.contributions is not None
    records = parsed.to_records() if callbacks or explained else []
    threshold, version = model.threshold, model.version
    predictions = [
        {
            "stroke_probability": p,
            "stroke_prediction": d,
            "threshold": threshold,
            "model_version": version,
            "prediction_id": i,
        }
        for p, d, i in zip(probabilities, decisions, prediction_ids, strict=True)
    ]
    if scores.contributions is not None:
        factor_lists = risk_factor_lists(
            scores.contributions, records, state.settings.risk_factor_count
        )
        for prediction, factors in zip(predictions, factor_lists, strict=True):
            prediction["base_value"] = scores.base_value
            prediction["risk_factors"] = factors
    response = json_response({"predictions": predictions} if parsed.is_batch else predictions[0])
    if callbacks:
        arguments = (callbacks, records, probabilities, decisions, prediction_ids)
        if len(prediction_ids) >= DEFERRED_CALLBACK_MIN_RECORDS:
            # Logging 10,000 records costs more than scoring them; for large batches it
            # runs after the response is sent, so the client does not wait for it.
            for callback in callbacks:
                defer = getattr(callback, "defer", None)
                if defer is not None:
                    defer(records, probabilities, decisions, prediction_ids)
            response.call_on_close(lambda: run_callbacks(*arguments))
        else:
            run_callbacks(*arguments)
    return response


def read_body(limit: int) -> bytes:
    """Return the request body; raise RequestEntityTooLarge (413) when over limit bytes."""
    environ = request.environ
    declared = environ.get("CONTENT_LENGTH", "")
    if declared.isdigit() and int(declared) <= limit and "HTTP_TRANSFER_ENCODING" not in environ:
        # The usual request: a declared length within the limit, read from the WSGI input
        # as get_data would (a body shorter than declared is cut short: invalid JSON, 400).
        return environ["wsgi.input"].read(int(declared))
    body = request.get_data(cache=False)
    if request.content_length is None and len(body) >= limit:
        # A chunked body is cut at the limit without an error; reading on past the limit
        # raises 413 when there is more.
        request.stream.read(1)
    return body


def run_callbacks(
    callbacks: Iterable[PredictionCallback],
    records: list[dict[str, Any]],
    probabilities: list[float],
    decisions: list[bool],
    ids: list[str],
) -> None:
    """Call every on_predictions callback; log (without data) and continue on failure."""
    for callback in callbacks:
        try:
            callback(records, probabilities, decisions, ids)
        except Exception as error:  # monitoring must never fail a prediction
            logger.error("prediction callback %r failed: %s", callback, type(error).__name__)


@api.get("/health")
def health() -> Response:
    """Return 200 while the process is alive."""
    return json_response({"status": "ok"})


@api.get("/ready")
def ready() -> Response:
    """Return 200 when a model is loaded and can answer, 503 otherwise."""
    model = service_state(current_app).model
    if model is None:
        return error_response(503, "model not loaded")
    return json_response({"status": "ready", "model_version": model.version})


@api.get("/version")
def version() -> Response:
    """Return the model version (artifact md5), git commit, threshold and training metrics."""
    model = service_state(current_app).model
    if model is None:
        return error_response(503, "model not loaded")
    return json_response({**model.version_info(), "auth": auth_state(current_app).describe()})


@api.get("/metrics")
def metrics() -> Response:
    """Return Prometheus metrics aggregated over all workers."""
    body, content_type = service_state(current_app).metrics.render()
    return Response(body, status=200, content_type=content_type)


@api.get("/openapi.json")
def openapi() -> Response:
    """Return the OpenAPI document generated from the schema."""
    return json_response(service_state(current_app).openapi)


# --- errors and request metrics --------------------------------------------------------


def handle_request_error(error: RequestError) -> Response:
    """Return the 4xx JSON of an invalid request and count its invalid fields."""
    fields = [metric_field(e) for e in error.field_errors] or [error.metric_label]
    service_state(current_app).metrics.observe_validation_failures(fields)
    return error_response(error.status, error.error, error.details)


def handle_http_error(error: HTTPException) -> Response:
    """Return werkzeug's HTTP errors (404, 405, 413, ...) as JSON, never HTML."""
    status = error.code or 500
    headers: dict[str, str] = {}
    details: list[dict[str, str]] = []
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        allowed = ", ".join(sorted(error.valid_methods))
        headers["Allow"] = allowed
        message = "method not allowed"
        details = [
            {
                "field": "(method)",
                "message": f"{request.method[:20]} is not allowed on {request.path[:200]}; "
                f"allowed: {allowed}",
            }
        ]
    elif status == 404:
        message = "not found"
        details = [
            {"field": "(url)", "message": f"no endpoint {request.path[:200]}; see /openapi.json"}
        ]
    elif status == 413:
        limit = service_state(current_app).settings.max_body_bytes
        message = "request body too large"
        details = [{"field": "(body)", "message": f"must be at most {limit} bytes"}]
    elif status == 408:
        seconds = service_state(current_app).settings.body_timeout_seconds
        message = "request body timed out"
        # (The connection is closed: app/body_deadline.py shuts its read side.)
        details = [{"field": "(body)", "message": f"must arrive within {seconds:g} s"}]
    elif status == 429:
        message = "too many requests"
        rate_limit = getattr(getattr(error, "limit", None), "limit", None)
        details = [
            {
                "field": "(credential)",
                "message": f"this credential sent more than {rate_limit or 'its limit'}; "
                "retry later",
            }
        ]
    else:
        message = (error.name or "error").lower()
    return error_response(status, message, details, headers)


def handle_unexpected(error: Exception) -> Response:
    """Return a bare 500 JSON; log the traceback frames but not the message (may hold data)."""
    frames = "".join(traceback.format_tb(error.__traceback__))
    logger.error(
        "unhandled %s in %s %s\n%s",
        type(error).__name__,
        request.method,
        request.path[:200],
        frames,
    )
    return error_response(500, "internal error")


def start_timer() -> None:
    g.request_started = time.perf_counter()


def add_api_headers(response: Response) -> Response:
    """Add nosniff and no-store to every answer that does not set its own."""
    for name, value in API_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def record_request(response: Response) -> Response:
    """Count the request under its route template ("other" for unknown routes)."""
    state = service_state(current_app)
    rule = request.url_rule
    if rule is not None:
        endpoint = rule.rule
    elif (
        isinstance(request.routing_exception, MethodNotAllowed)
        and request.path in state.route_templates
    ):
        endpoint = request.path
    else:
        endpoint = "other"
    started = g.get("request_started", time.perf_counter())
    state.metrics.observe_request(
        endpoint, request.method, response.status_code, time.perf_counter() - started
    )
    return response


def load_extension(spec: str) -> Extension:
    """Return the callable named by "module:function"."""
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "init_app")


def resolve_extensions(
    extensions: Iterable[Extension] | None, configured: Iterable[str]
) -> list[Extension]:
    """Return the extensions to run, in order, each once.

    extensions=None means DEFAULT_EXTENSIONS; the configured "module:function" names
    (STROKE_EXTENSIONS) follow, skipping any already in the list.
    """
    chosen = list(DEFAULT_EXTENSIONS if extensions is None else extensions)
    for extension in map(load_extension, configured):
        if extension not in chosen:
            chosen.append(extension)
    return chosen


def create_app(
    settings: Settings | None = None,
    *,
    model: LoadedModel | None = None,
    load: bool = True,
    extensions: Iterable[Extension] | None = None,
) -> Flask:
    """Return the prediction service.

    Loads the model revision of the working tree (settings from the environment by
    default), verified against dvc.lock; raises ServiceStartError (a RuntimeError with a
    one-line message) when it cannot be served. Pass ``model`` to reuse a loaded one, or
    ``load=False`` for an app that is alive but not ready (live monitoring then stays
    off). ``extensions`` replaces DEFAULT_EXTENSIONS (the page and live monitoring);
    ``extensions=()`` gives the bare API.
    """
    try:
        settings = settings or Settings.from_env()
        if model is None and load:
            model = load_model(settings)
    except (ArtifactError, SettingsError) as error:
        raise ServiceStartError(f"stroke-risk server cannot start: {error}") from None
    # No app-level static route: the page blueprint owns /static (app/static).
    app = ServiceFlask(
        __name__, static_folder=None, body_timeout_seconds=settings.body_timeout_seconds
    )
    # No redirects: werkzeug would build their Location from the request's Host header
    # (GET /static//x -> http://<any host>/static/x); unmatched paths are a JSON 404.
    # (strict_slashes only redirects to rules ending in "/", and only "/" does.)
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config[CALLBACKS_KEY] = []
    metrics_state = ServiceMetrics()
    state = ServiceState(
        settings,
        None,
        metrics_state,
        openapi_document(settings.max_batch_size, settings.risk_factor_count),
    )
    app.extensions[STATE_KEY] = state
    app.register_blueprint(api)
    app.register_error_handler(RequestError, handle_request_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
    app.before_request(start_timer)
    try:
        init_auth(app, settings)  # its scope check runs after start_timer
    except SettingsError as error:
        raise ServiceStartError(f"stroke-risk server cannot start: {error}") from None
    app.after_request(add_api_headers)
    app.after_request(record_request)
    if model is not None:
        install_model(app, model)
    try:
        for extension in resolve_extensions(extensions, settings.extensions):
            extension(app)
    except (ArtifactError, SettingsError) as error:
        raise ServiceStartError(f"stroke-risk server cannot start: {error}") from None
    state.route_templates = frozenset(rule.rule for rule in app.url_map.iter_rules())
    return app
