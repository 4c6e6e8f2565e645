"""The JSON answers of the service: bodies, the error format and the JSON request check.

Shared by every route (app/factory.py, app/feedback.py, app/auth.py), so every answer,
error or not, has one shape: ``{"error": ..., "details": [{"field", "message"}]}``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Response, request

JSON_TYPE = "application/json"


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Return a JSON response serialised with orjson (fast, floats round-trip exactly)."""
    return Response(orjson.dumps(payload), status=status, mimetype=JSON_TYPE, headers=headers)


def error_response(
    status: int,
    error: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Return {"error": ..., "details": [...]} with the status.

    Serialised by the standard library with ASCII escapes: error texts may quote user
    input, which can hold lone surrogates that orjson refuses to encode.
    """
    body = json.dumps({"error": error, "details": details or []}, ensure_ascii=True)
    return Response(body, status=status, mimetype=JSON_TYPE, headers=headers)


def is_json_request() -> bool:
    """Return whether the request declares a JSON body (UTF-8, the only charset allowed)."""
    if request.environ.get("CONTENT_TYPE") == JSON_TYPE:
        return True  # the usual header, without parsing it
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    return request.mimetype == JSON_TYPE and charset in {"utf-8", "utf8"}
