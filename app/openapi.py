"""The OpenAPI 3.1 document of the service, generated from stroke_risk.schema."""

from __future__ import annotations

import copy
from typing import Any

from app.payload import BATCH_KEY, EXPLAIN_PARAMETER
from stroke_risk.schema import EXAMPLE_RECORD, FEATURE_NAMES, FIELD_ALIASES, record_json_schema

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
            "description": "unique id of this prediction (uuid4 hex), for POST /feedback",
        },
        "base_value": {
            "type": "number",
            "description": "log-odds of the model's reference patient; base_value plus the "
            "contributions of all ten fields is log(p / (1 - p)) of stroke_probability "
            "(random forests: of p clipped to [1e-6, 1 - 1e-6]). Absent with explain=false.",
        },
        "risk_factors": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/RiskFactor"},
            "description": "the fields that moved this patient's risk most, largest "
            "|contribution| first. Absent with explain=false.",
        },
    },
    "additionalProperties": False,
}
RISK_FACTOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["feature", "value", "contribution"],
    "properties": {
        "feature": {"enum": list(FEATURE_NAMES), "description": "canonical field name"},
        "value": {
            "type": ["number", "string", "null"],
            "description": "the value the model scored (null: bmi missing, imputed)",
        },
        "contribution": {
            "type": "number",
            "description": "change of the log-odds this field makes relative to base_value; "
            "positive raises the risk",
        },
    },
    "additionalProperties": False,
}
FEEDBACK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prediction_id", "stroke"],
    "properties": {
        "prediction_id": {
            "type": "string",
            "pattern": "^[0-9a-f]{32}$",
            "description": "the prediction_id /predict answered",
        },
        "stroke": {"enum": [0, 1], "description": "the patient's true outcome"},
    },
    "additionalProperties": False,
}
FEEDBACK_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prediction_id", "stroke", "status"],
    "properties": {
        "prediction_id": {"type": "string"},
        "stroke": {"enum": [0, 1]},
        "status": {"const": "recorded"},
    },
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


def feedback_path() -> dict[str, Any]:
    """Return the /feedback path item (live monitoring, app/monitoring.py)."""
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
                    "content": {"application/json": {"schema": FEEDBACK_RESULT_SCHEMA}},
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
        f"One patient's ten fields. Also accepted: {aliases}. bmi may be null or absent "
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
        "400": _error(
            "Malformed JSON, invalid records or an invalid query parameter; every problem is listed"
        ),
        "413": _error(f"Body over the size limit, or more than {max_batch_size} records"),
        "415": _error("Content-Type is not application/json"),
        "503": _error("Model not loaded"),
    }
    prediction = copy.deepcopy(PREDICTION_SCHEMA)
    prediction["properties"]["risk_factors"]["minItems"] = risk_factor_count
    prediction["properties"]["risk_factors"]["maxItems"] = risk_factor_count
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
                "Prediction": prediction,
                "RiskFactor": RISK_FACTOR_SCHEMA,
                "Error": ERROR_SCHEMA,
            }
        },
    }
    if feedback:
        document["paths"]["/feedback"] = feedback_path()
        document["components"]["schemas"]["Feedback"] = FEEDBACK_SCHEMA
    return document
