"""The OpenAPI 3.1 document of the service, generated from stroke_risk.schema."""

from __future__ import annotations

from typing import Any

from app.payload import BATCH_KEY
from stroke_risk.schema import FIELD_ALIASES, record_json_schema

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "details"],
    "properties": {
        "error": {"type": "string"},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
PREDICTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "stroke_probability",
        "stroke_prediction",
        "threshold",
        "model_version",
        "prediction_id",
    ],
    "properties": {
        "stroke_probability": {"type": "number", "minimum": 0, "maximum": 1},
        "stroke_prediction": {
            "type": "boolean",
            "description": "stroke_probability >= threshold",
        },
        "threshold": {"type": "number", "description": "the model's decision threshold"},
        "model_version": {"type": "string", "description": "md5 of the model artifact"},
        "prediction_id": {
            "type": "string",
            "pattern": "^[0-9a-f]{32}$",
            "description": "unique id of this prediction (uuid4 hex)",
        },
    },
    "additionalProperties": False,
}


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


def openapi_document(max_batch_size: int) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document; record fields come from record_json_schema()."""
    aliases = ", ".join(f"{alias!r} for {name!r}" for alias, name in FIELD_ALIASES.items())
    record = record_json_schema()
    record["description"] = (
        f"One patient's ten fields. Also accepted: {aliases}. bmi may be null or absent "
        "(imputed as in training)."
    )
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
                            {
                                "type": "object",
                                "required": ["predictions"],
                                "properties": {
                                    "predictions": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Prediction"},
                                    }
                                },
                                "additionalProperties": False,
                            },
                        ]
                    }
                }
            },
        },
        "400": _error("Malformed JSON or invalid records; every problem is listed"),
        "413": _error(f"Body over the size limit, or more than {max_batch_size} records"),
        "415": _error("Content-Type is not application/json"),
    }
    status_schema = {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    }
    return {
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
                "Prediction": PREDICTION_SCHEMA,
                "Error": ERROR_SCHEMA,
            }
        },
    }
