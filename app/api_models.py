"""The bodies the API accepts and answers, defined once as pydantic models.

app/openapi.py generates the OpenAPI components from these models, and POST /feedback
validates its body with ``Feedback`` itself, so the document and the code cannot disagree.
(/predict records are validated by the vectorised validator generated from
stroke_risk.data.schema, whose JSON Schema the OpenAPI document also embeds.) Responses are
built as plain dicts on the hot path; the tests validate them against these models.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from stroke_risk.data.schema import FEATURE_NAMES

MAX_PREDICTION_ID_LENGTH = 200

# At least one character that is not white space, in the same sense for the validator (Rust
# regex: Unicode White_Space) and for the published schema (JSON Schema patterns are ECMA-262,
# whose \s lacks U+0085 and has U+FEFF): both named, so a client and the server agree.
PredictionId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_PREDICTION_ID_LENGTH, pattern=r"[^\s\u0085\ufeff]"
    ),
    Field(description="the prediction_id /predict answered"),
]


def _number_not_bool(value: Any) -> Any:
    """JSON true/false and strings are not outcomes (1.0 is: JSON Schema's integer 1)."""
    if isinstance(value, (bool, str)):
        raise ValueError("must be 0 or 1")
    return value


Outcome = Annotated[int, BeforeValidator(_number_not_bool)]


class ErrorDetail(BaseModel):
    field: str = Field(description="the field, parameter or header at fault")
    message: str = Field(description="what is wrong and what is allowed")


class Error(BaseModel):
    """Every 4xx/5xx answer."""

    error: str
    details: list[ErrorDetail]


class RiskFactor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: Literal[FEATURE_NAMES] = Field(description="canonical field name")  # type: ignore[valid-type]
    value: float | str | None = Field(
        description="the value the model scored (null: bmi missing, imputed)"
    )
    contribution: float = Field(
        description="change of the log-odds this field makes relative to base_value; "
        "positive raises the risk"
    )


class Prediction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stroke_probability: float = Field(ge=0, le=1)
    stroke_prediction: bool = Field(description="stroke_probability >= threshold")
    threshold: float = Field(description="the model's decision threshold")
    model_version: str = Field(description="md5 of the model artifact")
    prediction_id: str = Field(
        pattern="^[0-9a-f]{32}$",
        description="unique id of this prediction (32 hex digits), for POST /feedback; "
        "the records of one large batch share the first 16",
    )
    base_value: float | None = Field(
        default=None,
        description="log-odds of the model's reference patient; base_value plus the "
        "contributions of all input fields is log(p / (1 - p)) of stroke_probability "
        "(random forests: of p clipped to [1e-6, 1 - 1e-6]). Absent with explain=false.",
    )
    risk_factors: list[RiskFactor] | None = Field(
        default=None,
        description="the fields that moved this patient's risk most, largest "
        "|contribution| first. Absent with explain=false.",
    )


class PredictionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    predictions: list[Prediction]


class Feedback(BaseModel):
    """POST /feedback: the true outcome of an earlier prediction."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: PredictionId
    stroke: Outcome = Field(
        ge=0, le=1, json_schema_extra={"enum": [0, 1]}, description="the patient's true outcome"
    )


class FeedbackResult(BaseModel):
    prediction_id: str
    stroke: Literal[0, 1]
    status: Literal["recorded"]


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def error_details(error: ValidationError, allowed: tuple[str, ...]) -> list[dict[str, str]]:
    """Return pydantic's errors as [{"field", "message"}], each quoting the value given."""
    details = []
    for problem in error.errors():
        location = problem["loc"]
        field = ".".join(str(part) for part in location)[:60] or "(body)"
        kind = problem["type"]
        if kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = f"unknown field; allowed fields are {', '.join(allowed)}"
        elif kind == "model_type":
            message = f"must be a JSON object, got {_shown(problem['input'])}"
        elif field == "stroke":
            message = f"must be 0 or 1, got {_shown(problem['input'])}"
        elif field == "prediction_id":
            message = (
                f"must be a non-empty string of at most {MAX_PREDICTION_ID_LENGTH} "
                f"characters, got {_shown(problem['input'])}"
            )
        else:
            message = f"{problem['msg']}, got {_shown(problem['input'])}"
        details.append({"field": field, "message": message})
    return details


def parse_feedback(document: Any) -> Feedback:
    """Return the validated feedback; raise ValueError carrying error_details in args[0]."""
    try:
        return Feedback.model_validate(document)
    except ValidationError as error:
        raise ValueError(error_details(error, tuple(Feedback.model_fields))) from None


def component_schemas() -> dict[str, Any]:
    """Return the OpenAPI component schemas of every model (refs into components)."""
    from pydantic.json_schema import models_json_schema

    _, document = models_json_schema(
        [
            (model, "serialization" if model is not Feedback else "validation")
            for model in (Error, RiskFactor, Prediction, PredictionBatch, Feedback, FeedbackResult)
        ],
        ref_template="#/components/schemas/{model}",
    )
    return document.get("$defs", {})
