"""Turn a /predict request body into validated columns, or a 4xx error listing every problem.

The body is parsed with orjson (fast, strict). What orjson refuses is parsed again with
the standard library so that NaN/Infinity literals reach the validator and are reported
against their field, and other syntax errors get a line and column. Integers too long
for a float become infinity (reported as not finite) instead of crashing float().
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.columns import FeatureColumns
from app.validation import BatchValidation, flatten_errors, validate_records
from stroke_risk.data.schema import FieldError

BATCH_KEY = "instances"
# Query parameter of /predict: "false" leaves the risk factors out of the answer.
EXPLAIN_PARAMETER = "explain"
# Longest integer literal kept as an int: float(int) overflows beyond ~309 digits.
MAX_INT_DIGITS = 300


@dataclass
class RequestError(Exception):
    """A client error: HTTP status, a one-line summary and per-field details."""

    status: int
    error: str
    details: list[dict[str, str]] = field(default_factory=list)
    field_errors: list[FieldError] = field(default_factory=list)
    # Label counted by stroke_validation_failures_total when no record field is at fault.
    metric_label: str = "(body)"

    def body(self) -> dict[str, Any]:
        """Return the JSON error document {"error": ..., "details": [...]}."""
        return {"error": self.error, "details": self.details}


@dataclass(frozen=True)
class ParsedRequest:
    """Validated records of one request and whether it used the batch form."""

    columns: FeatureColumns
    is_batch: bool
    # The records as dicts of the ten canonical fields, when validation produced them.
    records: list[dict[str, Any]] | None = None

    def to_records(self) -> list[dict[str, Any]]:
        """Return one dict of the ten canonical fields per record (bmi None if missing)."""
        return self.records if self.records is not None else self.columns.to_records()


def _parse_int(literal: str) -> int | float:
    """Return the int, or a float (inf when huge) for literals too long to convert."""
    return int(literal) if len(literal.lstrip("-")) <= MAX_INT_DIGITS else float(literal)


def parse_json(body: bytes) -> Any:
    """Return the parsed JSON document; raise RequestError (400) for anything malformed.

    A key given twice in one object is malformed too (orjson, like json, keeps the last):
    the error names the key.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    else:
        # Fast check: every key is a string directly followed by ':' in compact JSON, and
        # no key is lost to a duplicate when their count equals the parsed keys'. Other
        # spacing, or '":' inside a string, takes the exact (slower) parse below.
        if body.count(b'":') != _key_count(document):
            _refuse_duplicate_keys(body)
        return document
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(
            400, f"request body is not valid UTF-8 (byte {error.start})", [_body("not UTF-8")]
        ) from None
    try:
        return json.loads(text, parse_int=_parse_int, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise RequestError(400, "JSON is nested too deeply", [_body("nested too deeply")]) from None
    except ValueError as error:
        message = f"malformed JSON: {error}"
        raise RequestError(400, message, [_body(message)]) from None


def _key_count(document: Any) -> int:
    """Return how many keys the objects of a parsed document hold, nested ones included."""
    count, pending = 0, [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            count += len(value)
            pending.extend(v for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            pending.extend(v for v in value if isinstance(v, (dict, list)))
    return count


def first_repeated(keys: Iterable[str]) -> str:
    """Return the first key that occurs a second time; ValueError when none does."""
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    raise ValueError("no key is repeated")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: the object as a dict; RequestError (400) naming a repeated key."""
    document = dict(pairs)
    if len(document) != len(pairs):
        repeated = first_repeated(key for key, _ in pairs)
        raise RequestError(
            400,
            "duplicate key in JSON object",
            [{"field": repeated[:60], "message": "is given more than once; send each key once"}],
        )
    return document


def _refuse_duplicate_keys(body: bytes) -> None:
    """Parse body exactly, raising RequestError (400) at the first key given twice."""
    # orjson parsed it, so only a duplicate key can be refused here.
    with suppress(ValueError, RecursionError):
        json.loads(body.decode("utf-8"), parse_int=_parse_int, object_pairs_hook=_unique_keys)


def _body(message: str) -> dict[str, str]:
    return {"field": "(body)", "message": message}


def parse_predict_request(body: bytes, max_batch_size: int) -> ParsedRequest:
    """Return the validated records of a /predict body, single record or batch form.

    Raises RequestError: 400 for malformed JSON or invalid records (every problem listed,
    batch fields named like 'instances[3].age'), 413 for a batch over max_batch_size.
    """
    if not body:
        raise RequestError(400, "request body is empty", [_body("expected a JSON object")])
    document = parse_json(body)
    if not isinstance(document, dict):
        kind = type(document).__name__ if document is not None else "null"
        raise RequestError(
            400,
            "request body must be a JSON object",
            [_body(f"expected one record or {{{BATCH_KEY!r}: [...]}}, got {kind}")],
        )
    if BATCH_KEY not in document:
        validation = validate_records([document])
        return ParsedRequest(_checked(validation, None), False, validation.clean_records)
    extra = sorted(str(key)[:60] for key in document if key != BATCH_KEY)
    if extra:
        message = f"unknown field; a batch body has only {BATCH_KEY!r}"
        raise RequestError(
            400, "invalid batch request", [{"field": key, "message": message} for key in extra]
        )
    instances = document[BATCH_KEY]
    if not isinstance(instances, list):
        raise RequestError(
            400,
            "invalid batch request",
            [{"field": BATCH_KEY, "message": f"must be a list of records, got {_kind(instances)}"}],
        )
    if not instances:
        raise RequestError(
            400,
            "empty batch",
            [{"field": BATCH_KEY, "message": f"must hold 1 to {max_batch_size} records, got 0"}],
        )
    if len(instances) > max_batch_size:
        raise RequestError(
            413,
            "batch too large",
            [
                {
                    "field": BATCH_KEY,
                    "message": f"must hold 1 to {max_batch_size} records, got "
                    f"{len(instances)}; split it into smaller batches",
                }
            ],
        )
    validation = validate_records(instances)
    return ParsedRequest(_checked(validation, BATCH_KEY), True, validation.clean_records)


def parse_explain(value: str | None) -> bool:
    """Return the explain query parameter: True when absent; raise RequestError (400) unless
    it is "true" or "false" (OpenAPI's form of a boolean)."""
    if value is None or value == "true":
        return True
    if value == "false":
        return False
    raise RequestError(
        400,
        "invalid query parameter",
        [{"field": EXPLAIN_PARAMETER, "message": f"must be true or false, got {value[:40]!r}"}],
        metric_label="(query)",
    )


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _checked(validation: BatchValidation, prefix: str | None) -> FeatureColumns:
    """Return the columns, or raise RequestError(400) listing every invalid field."""
    if validation.ok:
        return validation.columns
    details = flatten_errors(validation.row_errors, prefix)
    bad_records = len(validation.row_errors)
    summary = (
        f"{bad_records} of {validation.columns.n_rows} records are invalid"
        if prefix
        else "invalid record"
    )
    raise RequestError(
        400,
        summary,
        details,
        [error for errors in validation.row_errors.values() for error in errors],
    )
