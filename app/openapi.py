"""The OpenAPI 3.1 document of the service, generated from its definitions.

Records come from stroke_risk.data.schema (record_json_schema); every other body from the
pydantic models of app/api_models.py, which /feedback also validates with.
"""

from __future__ import annotations

from typing import Any

from app.api_models import component_schemas
from app.auth import ANY_SCOPE, ENDPOINT_SCOPES
from app.payload import BATCH_KEY, EXPLAIN_PARAMETER
from stroke_risk.data.schema import EXAMPLE_RECORD, FIELD_ALIASES, record_json_schema

SECURITY_SCHEME = "bearer"


def _json(schema_ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("Error")}


def _simple_get(summary: str, schema: dict[str, Any], extra: dict[str, Any] | None = None) -> dict:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": schema}}}
    }
    responses.update(extra or {})
    return {"get": {"summary": summary, "responses": responses}}


def feedback_path() -> dict[str, Any]:
    """Return the /feedback path item (live monitoring, app/feedback.py)."""
    return {
        "post": {
            "summary": "Record the true outcome of an earlier prediction",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}
                },
            },
            "responses": {
                "201": {
                    "description": "Recorded; counts towards the live performance metrics",
                    "content": _json("FeedbackResult"),
                },
                "400": _error("Malformed JSON or an invalid body; every problem is listed"),
                "404": _error("No stored prediction has this id"),
                "409": _error("Feedback for this prediction was already recorded"),
                "413": _error("Body over the size limit"),
                "415": _error("Content-Type is not application/json"),
                "503": _error("The prediction log is unavailable"),
            },
        }
    }


def openapi_document(
    max_batch_size: int, risk_factor_count: int = 3, *, feedback: bool = False
) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document; record fields come from record_json_schema().

    risk_factor_count is how many risk factors each prediction lists; feedback adds
    POST /feedback (served when live monitoring is installed).
    """
    aliases = ", ".join(f"{alias!r} for {name!r}" for alias, name in FIELD_ALIASES.items())
    record = record_json_schema()
    record["description"] = (
        f"One patient's input fields. Also accepted: {aliases}. bmi may be null or absent "
        "(imputed as in training)."
    )
    record["examples"] = [dict(EXAMPLE_RECORD)]
    batch = {
        "type": "object",
        "required": [BATCH_KEY],
        "properties": {
            BATCH_KEY: {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Record"},
                "minItems": 1,
                "maxItems": max_batch_size,
            }
        },
        "additionalProperties": False,
    }
    predict_responses = {
        "200": {
            "description": "The prediction(s), in request order",
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/Prediction"},
                            {"$ref": "#/components/schemas/PredictionBatch"},
                        ]
                    }
                }
            },
        },
        "400": _error(
            "Malformed JSON, invalid records or an invalid query parameter; every problem is listed"
        ),
        "413": _error(f"Body over the size limit, or more than {max_batch_size} records"),
        "415": _error("Content-Type is not application/json"),
        "503": _error("Model not loaded"),
    }
    components = component_schemas()
    feedback_schema = components.pop("Feedback")
    factors = components["Prediction"]["properties"]["risk_factors"]
    # Present (with explain=true) as an array of exactly risk_factor_count items.
    components["Prediction"]["properties"]["risk_factors"] = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/RiskFactor"},
        "minItems": risk_factor_count,
        "maxItems": risk_factor_count,
        "description": factors.get("description", ""),
    }
    base = components["Prediction"]["properties"]["base_value"]
    components["Prediction"]["properties"]["base_value"] = {
        "type": "number",
        "description": base.get("description", ""),
    }
    status_schema = {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "stroke-risk prediction service",
            "version": "1.0.0",
            "description": "Stroke risk from ten routine fields at the decision threshold.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Score one record or a batch",
                    "parameters": [
                        {
                            "name": EXPLAIN_PARAMETER,
                            "in": "query",
                            "required": False,
                            "description": "true (default): each prediction has base_value "
                            f"and its {risk_factor_count} largest risk_factors; false: "
                            "leave them out (faster for large batches)",
                            "schema": {"type": "boolean", "default": True},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Record"},
                                        {"$ref": "#/components/schemas/Batch"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": predict_responses,
                }
            },
            "/health": _simple_get("Process is alive", status_schema),
            "/ready": _simple_get(
                "Model is loaded", status_schema, {"503": _error("Model not loaded")}
            ),
            "/version": _simple_get(
                "Model version, git commit, threshold and training metrics",
                {"type": "object", "required": ["model_version", "threshold"]},
            ),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of all workers",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": _simple_get("This document", {"type": "object"}),
        },
        "components": {
            "schemas": {
                "Record": record,
                "Batch": batch,
                **components,
            }
        },
    }
    if feedback:
        document["paths"]["/feedback"] = feedback_path()
        document["components"]["schemas"]["Feedback"] = feedback_schema
    add_security(document)
    return document


def add_security(document: dict[str, Any]) -> None:
    """Declare the bearer scheme and, from app.auth's table, what each operation needs."""
    document["components"]["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "A credential's token (python -m app.credentials add NAME "
            "--scopes ...); the list names the scope an operation needs (empty: any).",
        }
    }
    for path, scope in ENDPOINT_SCOPES.items():
        for operation in document["paths"].get(path, {}).values():
            operation["security"] = [{SECURITY_SCHEME: [] if scope == ANY_SCOPE else [scope]}]
            operation["responses"]["401"] = _error("No credential, or an unknown one")
            operation["responses"]["403"] = _error("The credential lacks the scope")
