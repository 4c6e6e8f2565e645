"""The clinician page: a form for the ten fields at ``/`` that shows the risk from /predict.

A default extension of create_app (app/factory.py DEFAULT_EXTENSIONS); the blueprint is
the only owner of ``/static`` (the app itself serves no static folder), and its assets
are the files of ``app/static``.

The form is rendered from ``stroke_risk.data.schema`` (categories, ranges, units), so it cannot
drift from what /predict accepts. With JavaScript the page posts JSON to /predict with
fetch; without it the form posts to ``/`` and the page dispatches the same JSON to
/predict inside the process, so both paths show exactly the API's answer and errors.

What the decision threshold means (sensitivity and specificity at it) is read once, at
start-up, from ``reports/evaluation.json`` under the project directory; when that file is
missing or unreadable the page still works and says the figures are unavailable. The
figures are only shown for a prediction whose threshold is the evaluated one.

Each result lists the risk factors /predict returns (the fields that moved this patient's
risk most, app/explanations.py).

The page sends a strict Content-Security-Policy: no inline script, style or handler, no
third-party origin; all assets come from ``app/static``.

Sign-in (app/auth.py): unless the service runs open, ``GET /`` shows a sign-in form until
the clinician gives a token holding scope ``predict``; ``POST /login`` then sets a signed
session cookie (a new session id, so a planted cookie cannot be carried into the signed-in
session) and ``POST /logout`` ends it. Every POST of the page carries the session's CSRF
token, an HMAC of the session id under the server's secret.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, render_template, request
from flask.globals import app_ctx
from werkzeug.test import EnvironBuilder

from app.auth import (
    CREDENTIAL_ENVIRON_KEY,
    CSRF_FIELD,
    SESSION_COOKIE,
    Session,
    auth_state,
    csrf_matches,
    csrf_token,
    read_session,
    session_cookie,
    session_credential,
)
from app.credentials import Credential
from app.service_state import service_state
from stroke_risk import paths
from stroke_risk.data.schema import (
    FEATURES,
    FEATURES_BY_NAME,
    BinaryField,
    CategoricalField,
    Field,
    NumericField,
)
from stroke_risk.evaluation.thresholds import THRESHOLD_POLICIES, policy_setting

logger = logging.getLogger(__name__)

PAGE_KEY = "stroke_risk_page"
PREDICT_PATH = "/predict"
EVALUATION_PATH = Path(paths.EVALUATION)
# The evaluation report rounds the threshold to 6 decimals; the model keeps full precision.
THRESHOLD_TOLERANCE = 1e-6
TOKEN_FIELD = "token"
PREDICT_SCOPE = "predict"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# Display names only: the field names, categories and ranges themselves come from the schema.
FIELD_LABELS: dict[str, str] = {
    "gender": "Gender",
    "age": "Age",
    "hypertension": "Hypertension",
    "heart_disease": "Heart disease",
    "ever_married": "Ever married",
    "work_type": "Work type",
    "Residence_type": "Residence",
    "avg_glucose_level": "Average glucose level",
    "bmi": "BMI",
    "smoking_status": "Smoking status",
}
CATEGORY_LABELS: dict[str, dict[str, str]] = {
    "work_type": {
        "Govt_job": "Government job",
        "Never_worked": "Never worked",
        "Private": "Private sector",
        "Self-employed": "Self-employed",
        "children": "Child (not of working age)",
    },
    "smoking_status": {
        "Unknown": "Not recorded",
        "formerly smoked": "Former smoker",
        "never smoked": "Never smoked",
        "smokes": "Current smoker",
    },
}
BINARY_LABELS: dict[int, str] = {0: "No", 1: "Yes"}
UNIT_LABELS: dict[str, str] = {"kg/m^2": "kg/m²"}
# Fieldsets in display (and tab) order; a schema field missing here goes to the last group.
FIELD_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Patient", ("age", "gender", "ever_married", "work_type", "Residence_type")),
    (
        "Clinical history and measurements",
        ("hypertension", "heart_disease", "avg_glucose_level", "bmi", "smoking_status"),
    ),
)
DECISION_TEXT: dict[str, str] = {
    "positive": "At or above the decision threshold of {threshold}: flagged as elevated risk.",
    "negative": "Below the decision threshold of {threshold}: not flagged.",
}
MISSING_VALUE_TEXT = "not given (estimated by the model)"


# --- the form --------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One <option>: the value sent to the API and the text shown."""

    value: str
    label: str


@dataclass(frozen=True)
class FormField:
    """What the template needs to render one input, derived from a schema field."""

    name: str
    label: str
    kind: str
    hint: str
    required: bool
    unit: str = ""
    minimum: str = ""  # min/max attributes of a numeric input, formatted for HTML
    maximum: str = ""
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class FieldGroup:
    """A <fieldset> of form fields with its legend."""

    legend: str
    fields: tuple[FormField, ...]


def field_label(name: str) -> str:
    """Return the display name of a schema field (a readable fallback for new fields)."""
    return FIELD_LABELS.get(name, name.replace("_", " ").capitalize())


def unit_label(unit: str) -> str:
    """Return a unit for display (kg/m^2 -> kg/m²)."""
    return UNIT_LABELS.get(unit, unit)


def format_number(value: float) -> str:
    """Return a number as typed: 67.0 -> "67", 228.69 -> "228.69" (same rule as page.js)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def category_label(name: str, value: str) -> str:
    """Return the display text of one category of a categorical field."""
    return CATEGORY_LABELS.get(name, {}).get(value, value)


def form_field(spec: Field) -> FormField:
    """Return the form field of one schema field: bounds, unit and options from the schema."""
    label = field_label(spec.name)
    if isinstance(spec, NumericField):
        unit = unit_label(spec.unit)
        hint = f"{format_number(spec.minimum)}–{format_number(spec.maximum)} {unit}."
        if spec.nullable:
            hint += " Leave empty if unknown."
        return FormField(
            name=spec.name,
            label=label,
            kind="numeric",
            hint=hint,
            required=not spec.nullable,
            unit=unit,
            minimum=format_number(spec.minimum),
            maximum=format_number(spec.maximum),
        )
    if isinstance(spec, BinaryField):
        options = tuple(Option(str(v), BINARY_LABELS.get(v, str(v))) for v in spec.values)
        return FormField(spec.name, label, "binary", "", True, options=options)
    if isinstance(spec, CategoricalField):
        options = tuple(Option(c, category_label(spec.name, c)) for c in spec.categories)
        return FormField(spec.name, label, "categorical", "", True, options=options)
    raise TypeError(f"unsupported schema field {spec!r}")


def form_groups() -> tuple[FieldGroup, ...]:
    """Return every schema field exactly once, grouped into fieldsets in display order."""
    placed = {name for _, names in FIELD_GROUPS for name in names if name in FEATURES_BY_NAME}
    groups = [
        FieldGroup(
            legend,
            tuple(form_field(FEATURES_BY_NAME[n]) for n in names if n in FEATURES_BY_NAME),
        )
        for legend, names in FIELD_GROUPS
    ]
    leftover = tuple(form_field(spec) for spec in FEATURES if spec.name not in placed)
    if leftover:
        groups.append(FieldGroup("Other", leftover))
    return tuple(group for group in groups if group.fields)


def record_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """Return the /predict JSON record of a submitted form (same rules as page.js).

    Empty inputs become null (the API then says which are required); text that is not a
    number is passed through as a string so the API reports it against its field.
    """
    record: dict[str, Any] = {}
    for spec in FEATURES:
        text = form.get(spec.name, "").strip()
        if not text:
            record[spec.name] = None
        elif isinstance(spec, (NumericField, BinaryField)):
            record[spec.name] = _number_or_text(text, integer=isinstance(spec, BinaryField))
        else:
            record[spec.name] = text
    return record


def _number_or_text(text: str, *, integer: bool) -> int | float | str:
    """Return text as a finite number (an int when integer and whole), else unchanged."""
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return int(number) if integer and number.is_integer() else number


# --- what the threshold means ----------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A metric with its 95 % bootstrap confidence interval."""

    value: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class ThresholdSummary:
    """The evaluated decision threshold and its sensitivity/specificity (from evaluation)."""

    threshold: float
    policy: str | None = None
    # The value of the one `threshold.*` setting the policy reads (target recall for
    # min_recall), None when it reads none (stroke_risk/evaluation/thresholds.py).
    policy_setting: float | None = None
    cv_recall: float | None = None
    cv_specificity: float | None = None
    test_recall: Interval | None = None
    test_specificity: Interval | None = None
    test_precision: Interval | None = None
    sentences: tuple[str, ...] = field(default=())


def _number(value: Any) -> float | None:
    """Return value as a float if it is a finite JSON number, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _interval(metric: Any) -> Interval | None:
    """Return {value, ci_low, ci_high} as an Interval (None when the value is unusable)."""
    if not isinstance(metric, dict) or (value := _number(metric.get("value"))) is None:
        return None
    return Interval(value, _number(metric.get("ci_low")), _number(metric.get("ci_high")))


def share(value: float) -> str:
    """Return a proportion as a whole percentage: 0.80303 -> "80%"."""
    return f"{value * 100:.0f}%"


def _with_interval(metric: Interval) -> str:
    """Return "80% (95% CI 68–90%)", or "80%" without an interval."""
    if metric.low is None or metric.high is None:
        return share(metric.value)
    return f"{share(metric.value)} (95% CI {metric.low * 100:.0f}–{metric.high * 100:.0f}%)"


def threshold_sentences(summary: ThresholdSummary) -> tuple[str, ...]:
    """Return the plain-language explanation of the threshold, one sentence per item."""
    sentences = [
        f"The model flags a patient when the estimated risk is at least "
        f"{format_percent(summary.threshold)}."
    ]
    policy = THRESHOLD_POLICIES.get(summary.policy or "")
    if policy is not None and (policy.setting is None or summary.policy_setting is not None):
        sentences.append(policy.clinician_sentence(summary.policy_setting))
    if summary.cv_recall is not None and summary.cv_specificity is not None:
        sentences.append(
            f"In cross-validation it flagged {share(summary.cv_recall)} of patients who had a "
            f"stroke (sensitivity) and did not flag {share(summary.cv_specificity)} of those "
            "who did not (specificity)."
        )
    if summary.test_recall is not None and summary.test_specificity is not None:
        sentences.append(
            f"On held-out test patients: sensitivity {_with_interval(summary.test_recall)}, "
            f"specificity {_with_interval(summary.test_specificity)}."
        )
    if summary.test_precision is not None:
        sentences.append(
            f"Of the test patients it flagged, {share(summary.test_precision.value)} had a "
            "stroke: a flag means a closer look, not a diagnosis."
        )
    return tuple(sentences)


def parse_evaluation(document: Any) -> ThresholdSummary | None:
    """Return the threshold summary of an evaluation.json document, None if it has none."""
    if not isinstance(document, dict):
        return None
    threshold = document.get("threshold")
    if not isinstance(threshold, dict) or (value := _number(threshold.get("value"))) is None:
        return None
    test = document.get("test")
    if not isinstance(test, dict):
        test = {}
    policy = threshold.get("policy")
    known = THRESHOLD_POLICIES.get(policy) if isinstance(policy, str) else None
    summary = ThresholdSummary(
        threshold=value,
        policy=policy if isinstance(policy, str) else None,
        policy_setting=_number(policy_setting(known, threshold)) if known else None,
        cv_recall=_number(threshold.get("cv_recall")),
        cv_specificity=_number(threshold.get("cv_specificity")),
        test_recall=_interval(test.get("recall")),
        test_specificity=_interval(test.get("specificity")),
        test_precision=_interval(test.get("precision")),
    )
    return replace(summary, sentences=threshold_sentences(summary))


def load_threshold_summary(path: Path) -> ThresholdSummary | None:
    """Read the threshold summary from evaluation.json; None (and a warning) if unusable."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        logger.warning("clinician page: %s not found; threshold figures not shown", path)
        return None
    except (OSError, ValueError) as error:
        logger.warning("clinician page: cannot read %s (%s)", path, type(error).__name__)
        return None
    summary = parse_evaluation(document)
    if summary is None:
        logger.warning("clinician page: %s has no usable 'threshold' section", path)
    return summary


def summary_applies(summary: ThresholdSummary | None, threshold: Any) -> bool:
    """True when the evaluated figures describe the threshold a prediction was made at."""
    value = _number(threshold)
    return (
        summary is not None
        and value is not None
        and abs(summary.threshold - value) <= THRESHOLD_TOLERANCE
    )


# --- the result ------------------------------------------------------------------------


def format_percent(probability: float) -> str:
    """Return a probability as a percentage with one decimal (same rule as page.js).

    Values that would round to 0.0 % or 100.0 % are shown as "<0.1%" / ">99.9%", since a
    model estimate is never exactly certain.
    """
    percent = probability * 100
    if percent < 0.05:
        return "<0.1%"
    if percent >= 99.95:
        return ">99.9%"
    return f"{percent:.1f}%"


def decision_text(positive: bool, threshold: float) -> str:
    """Return the sentence stating the decision at the threshold."""
    template = DECISION_TEXT["positive" if positive else "negative"]
    return template.replace("{threshold}", format_percent(threshold))


def value_text(name: str, value: Any) -> str:
    """Return an input value for display: units, Yes/No, category names, missing values."""
    spec = FEATURES_BY_NAME.get(name)
    if value is None:
        return MISSING_VALUE_TEXT
    if isinstance(spec, NumericField) and isinstance(value, (int, float)):
        return f"{format_number(value)} {unit_label(spec.unit)}"
    if isinstance(spec, BinaryField) and value in BINARY_LABELS:
        return BINARY_LABELS[int(value)]
    if isinstance(spec, CategoricalField):
        return category_label(name, str(value))
    return str(value)


@dataclass(frozen=True)
class RiskFactorView:
    """One risk factor as shown: field label, value text and direction."""

    label: str
    value: str
    direction: str  # "raises" | "lowers" | "neutral"
    direction_text: str


DIRECTION_TEXT: dict[str, str] = {
    "raises": "raises risk",
    "lowers": "lowers risk",
    "neutral": "no effect",
}


def risk_factor_views(factors: Any) -> list[RiskFactorView]:
    """Return the response's risk_factors for display, in the response's order."""
    views = []
    for factor in factors if isinstance(factors, list) else []:
        if not isinstance(factor, dict) or (c := _number(factor.get("contribution"))) is None:
            continue
        direction = "raises" if c > 0 else "lowers" if c < 0 else "neutral"
        name = str(factor.get("feature", ""))
        views.append(
            RiskFactorView(
                field_label(name),
                value_text(name, factor.get("value")),
                direction,
                DIRECTION_TEXT[direction],
            )
        )
    return views


@dataclass(frozen=True)
class ResultView:
    """A successful prediction as the template shows it."""

    percent: str
    positive: bool
    decision: str
    model_version: str
    prediction_id: str
    summary_applies: bool
    risk_factors: list[RiskFactorView]


def result_view(body: Mapping[str, Any], summary: ThresholdSummary | None) -> ResultView:
    """Return the display of one /predict response."""
    threshold = float(body["threshold"])
    positive = bool(body["stroke_prediction"])
    return ResultView(
        percent=format_percent(float(body["stroke_probability"])),
        positive=positive,
        decision=decision_text(positive, threshold),
        model_version=str(body.get("model_version", "")),
        prediction_id=str(body.get("prediction_id", "")),
        summary_applies=summary_applies(summary, threshold),
        risk_factors=risk_factor_views(body.get("risk_factors")),
    )


@dataclass
class ErrorView:
    """A rejected request: messages per form field and messages about the request."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)


def error_view(status: int, body: Any) -> ErrorView:
    """Split an API error into field messages (next to inputs) and general messages."""
    view = ErrorView()
    details = body.get("details") if isinstance(body, dict) else None
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        name, message = str(detail.get("field", "")), str(detail.get("message", ""))
        if name in FEATURES_BY_NAME and name not in view.fields:
            view.fields[name] = message
        else:
            view.general.append(f"{name}: {message}" if name else message)
    if not view.fields and not view.general:
        error = body.get("error") if isinstance(body, dict) else None
        view.general.append(f"The service could not score this patient (HTTP {status}: {error}).")
    return view


# --- the blueprint ---------------------------------------------------------------------

STATIC_DIR = Path(__file__).resolve().parent / "static"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

page = Blueprint(
    "page",
    __name__,
    template_folder=str(TEMPLATE_DIR),
    static_folder=str(STATIC_DIR),
    static_url_path="/static",
)


def page_summary() -> ThresholdSummary | None:
    """Return the threshold summary loaded by init_page for the current app."""
    return current_app.extensions[PAGE_KEY]


def current_model_version() -> str | None:
    """Return the version of the model answering now (None before it is loaded)."""
    model = service_state(current_app).model
    return model.version if model is not None else None


def client_config(summary: ThresholdSummary | None, csrf: str) -> dict[str, Any]:
    """Return what page.js needs to render results the way the server does."""
    return {
        "predictUrl": PREDICT_PATH,
        "csrfToken": csrf,
        "fields": {
            spec.name: {
                "label": field_label(spec.name),
                "kind": spec.kind,
                "unit": unit_label(spec.unit) if isinstance(spec, NumericField) else "",
                "categories": CATEGORY_LABELS.get(spec.name, {}),
            }
            for spec in FEATURES
        },
        "binaryLabels": {str(k): v for k, v in BINARY_LABELS.items()},
        "decisionText": DECISION_TEXT,
        "directionText": DIRECTION_TEXT,
        "missingValueText": MISSING_VALUE_TEXT,
        "evaluatedThreshold": summary.threshold if summary else None,
        "thresholdTolerance": THRESHOLD_TOLERANCE,
    }


def page_session() -> Session:
    """Return this browser's page session; a new anonymous one (cookie set on the answer)
    when it sent none, or one that is forged or expired."""
    if "page_session" not in g:
        state = auth_state(current_app)
        session = read_session(state, request.cookies.get(SESSION_COOKIE))
        if session is None:
            g.new_session_cookie = session_cookie(state)
            session = read_session(state, g.new_session_cookie)
        g.page_session = session
    return g.page_session


def start_session(name: str) -> None:
    """Replace this browser's session by a new one (signed in as name, or anonymous)."""
    state = auth_state(current_app)
    g.new_session_cookie = session_cookie(state, name)
    g.page_session = read_session(state, g.new_session_cookie)


def signed_in_credential() -> Credential | None:
    """Return the credential this browser is signed in with (any credential when open)."""
    return session_credential(auth_state(current_app), page_session())


def with_session_cookie(response: Response) -> Response:
    """Set the session cookie when this request started or replaced the session."""
    value = g.get("new_session_cookie")
    if value is not None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=int(auth_state(current_app).session_seconds),
            httponly=True,
            samesite="Strict",
            secure=request.is_secure,
            path="/",
        )
    return response


def render_page(
    *,
    status: int = 200,
    values: Mapping[str, str] | None = None,
    result: ResultView | None = None,
    errors: ErrorView | None = None,
) -> Response:
    """Render the page (sign-in, empty, with a result, or with errors) with its headers."""
    summary = page_summary()
    state = auth_state(current_app)
    credential = signed_in_credential()
    token = csrf_token(state, page_session())
    html = render_template(
        "page/index.html",
        groups=form_groups(),
        values=values or {},
        result=result,
        errors=errors or ErrorView(),
        summary=summary,
        model_version=current_model_version(),
        config=client_config(summary, token),
        csrf_token=token,
        signed_in=credential is not None and credential.allows(PREDICT_SCOPE),
        credential_name=None if state.open or credential is None else credential.name,
    )
    response = Response(html, status=status, mimetype="text/html", headers=SECURITY_HEADERS)
    return with_session_cookie(response)


def see_page() -> Response:
    """Answer a page POST with 303 to the page; the Location is relative (never Host-built)."""
    response = Response("", status=303, headers={"Location": "/", **SECURITY_HEADERS})
    return with_session_cookie(response)


@page.get("/")
def index() -> Response:
    """Serve the form, or the sign-in form until this browser is signed in."""
    return render_page()


def csrf_problem() -> str | None:
    """Return why a page POST is refused as cross-site, or None when it is the page's own.

    The form carries its session's CSRF token: an HMAC of the session id (kept in the
    SameSite=Strict, HttpOnly cookie) under the server's secret, so another site can
    neither read nor forge a matching pair. A browser's Origin header, when present,
    must also be this host.
    """
    origin = request.headers.get("Origin")
    # Under `Referrer-Policy: no-referrer` browsers send `Origin: null` for the page's own
    # form; the session-bound token below is what protects it then.
    if origin not in (None, "null") and origin != request.host_url.rstrip("/"):
        return "the form was sent from another site"
    state = auth_state(current_app)
    session = read_session(state, request.cookies.get(SESSION_COOKIE))
    if session is None or not csrf_matches(state, session, request.form.get(CSRF_FIELD)):
        return "the form has expired or was not sent by this page"
    return None


def refused(status: int, message: str, values: Mapping[str, str] | None = None) -> Response:
    """Render the page with status and message in its general error list."""
    errors = ErrorView()
    errors.general.append(message)
    return render_page(status=status, values=values, errors=errors)


@page.post("/login")
def login() -> Response:
    """Sign in with a token holding scope predict; 303 to the page, or the form again."""
    problem = csrf_problem()
    if problem is not None:
        return refused(403, f"Not signed in: {problem}. Reload the page and try again.")
    state = auth_state(current_app)
    if state.open:
        return see_page()  # nothing to sign in to
    credential = state.store.authenticate(request.form.get(TOKEN_FIELD, "").strip())
    if credential is None:
        return refused(401, "Not signed in: this access token is not known.")
    if not credential.allows(PREDICT_SCOPE):
        return refused(403, f"Not signed in: {credential.name!r} lacks scope 'predict'.")
    start_session(credential.name)
    logger.info("page: %s signed in", credential.name)
    return see_page()


@page.post("/logout")
def logout() -> Response:
    """End the session (a new anonymous one replaces it); 303 to the sign-in form."""
    if csrf_problem() is None:
        start_session("")
    return see_page()


@page.post("/")
def submit() -> Response:
    """Score the submitted form without JavaScript: same /predict call, rendered here."""
    values = {spec.name: request.form.get(spec.name, "") for spec in FEATURES}
    problem = csrf_problem()
    if problem is not None:
        return refused(403, f"Not scored: {problem}. Reload the page and submit again.", values)
    credential = signed_in_credential()
    if credential is None or not credential.allows(PREDICT_SCOPE):
        return refused(401, "Not scored: sign in with an access token first.", values)
    status, body = predict_in_process(record_from_form(values), credential)
    if status == 200 and isinstance(body, dict) and "stroke_probability" in body:
        return render_page(values=values, result=result_view(body, page_summary()))
    return render_page(
        status=status if status >= 400 else 502, values=values, errors=error_view(status, body)
    )


def predict_in_process(record: dict[str, Any], credential: Credential) -> tuple[int, Any]:
    """POST record to /predict through the app's own WSGI stack; return (status, JSON body).

    Going through the app (not the model directly) keeps one code path: validation,
    metrics, prediction callbacks and the response shape are exactly those of /predict.
    A fresh application context keeps the outer request's ``g`` untouched. The inner
    request is authorised as credential (the signed-in clinician).
    """
    app = app_ctx.app  # the app itself, not the current_app proxy
    builder = EnvironBuilder(path=PREDICT_PATH, method="POST", json=record)
    try:
        environ = builder.get_environ()
        environ[CREDENTIAL_ENVIRON_KEY] = credential
    finally:
        builder.close()
    with app.app_context():
        response = app.response_class.from_app(app.wsgi_app, environ, buffered=True)
    try:
        return response.status_code, json.loads(response.get_data())
    except ValueError:
        return response.status_code, None


def init_page(app: Flask) -> None:
    """Extension: serve the clinician page at ``/`` (assets under ``/static``).

    Reads reports/evaluation.json under the service's project directory once, here.
    """
    path = service_state(app).settings.project_dir / EVALUATION_PATH
    app.extensions[PAGE_KEY] = load_threshold_summary(path)
    app.register_blueprint(page)
