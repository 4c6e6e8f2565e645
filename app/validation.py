"""Validate many records at once against stroke_risk.data.schema, column by column.

``stroke_risk.data.schema.validate_record`` is the authority: it decides what is valid and
phrases every error. Calling it per record costs ~15 us, too slow for a 10,000-record
batch or a million-row file, so ``validate_columns`` first checks whole columns with a
few vectorised tests derived from the same FEATURES specs. A row those tests accept is
one validate_record accepts with the same values (the tests are at least as strict; a
property test checks the two agree); every row they reject is handed to validate_record,
which supplies the messages and has the last word.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from app.columns import FeatureColumns, set_row
from stroke_risk.data.schema import (
    FEATURE_NAMES,
    FEATURES,
    FIELD_ALIASES,
    BinaryField,
    CategoricalField,
    FieldError,
    NumericField,
    validate_record,
)

_NUMBER_TYPES = frozenset({int, float})
_NONE_TYPE = type(None)
ALL_FIELDS = frozenset(FEATURE_NAMES)
REQUIRED_FIELDS = frozenset(
    spec.name for spec in FEATURES if not (isinstance(spec, NumericField) and spec.nullable)
)
# Key sets that need no renaming: the canonical names, minus any optional fields.
_OPTIONAL = sorted(ALL_FIELDS - REQUIRED_FIELDS)
CANONICAL_KEY_SETS = tuple(
    ALL_FIELDS - frozenset(dropped)
    for size in range(len(_OPTIONAL) + 1)
    for dropped in itertools.combinations(_OPTIONAL, size)
)
# Up to this many records, per-record validate_record beats the column checks' overhead.
SMALL_BATCH = 8
# Stands in for an invalid row so the batch still has one value per row and field.
PLACEHOLDER: dict[str, Any] = {
    spec.name: (
        spec.minimum
        if isinstance(spec, NumericField)
        else spec.values[0]
        if isinstance(spec, BinaryField)
        else spec.categories[0]
    )
    for spec in FEATURES
}


@dataclass
class BatchValidation:
    """Typed columns of every row (rows with errors hold placeholders) and the errors."""

    columns: FeatureColumns
    row_errors: dict[int, list[FieldError]] = field(default_factory=dict)
    # The rows as validate_record cleaned them (canonical names, schema order), when the
    # validator has them at no cost (small batches): what FeatureColumns.to_records gives.
    clean_records: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return not self.row_errors

    def valid_mask(self) -> np.ndarray:
        """Return a boolean mask of the rows without errors."""
        mask = np.ones(self.columns.n_rows, dtype=bool)
        mask[list(self.row_errors)] = False
        return mask


def canonical_record(record: Any) -> dict[str, Any] | None:
    """Return the record with canonical field names and absent optional fields as None.

    Returns None when the record is not a dict, has an unknown or doubled field, or lacks
    a required one: validate_record then reports exactly what is wrong.
    """
    if type(record) is not dict:
        return None
    keys = record.keys()
    if keys in CANONICAL_KEY_SETS:
        return record
    fields: dict[str, Any] = record  # a JSON object: its keys are strings
    renamed = {FIELD_ALIASES.get(key, key): value for key, value in fields.items()}
    if len(renamed) != len(record) or not REQUIRED_FIELDS <= renamed.keys() <= ALL_FIELDS:
        return None
    return renamed


def numeric_column(spec: NumericField, values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return (float64 values with NaN for None, mask of values validate_value accepts)."""
    types = set(map(type, values))
    allowed = _NUMBER_TYPES | {_NONE_TYPE} if spec.nullable else _NUMBER_TYPES
    if types <= allowed:
        try:
            array = np.array(values, dtype=np.float64)
        except OverflowError:  # an int beyond float range; the slow path phrases it
            array = None
        if array is not None:
            ok = (array >= spec.minimum) & (array <= spec.maximum)  # False for NaN
            if _NONE_TYPE in types:
                # None means "missing" and is allowed here; a NaN float never is.
                ok |= np.fromiter((v is None for v in values), bool, len(values))
            return array, ok
    array = np.full(len(values), np.nan)
    ok = np.zeros(len(values), dtype=bool)
    for row, value in enumerate(values):
        if value is None:
            ok[row] = spec.nullable
        elif type(value) in _NUMBER_TYPES and spec.minimum <= value <= spec.maximum:
            array[row], ok[row] = value, True
    return array, ok


def binary_column(spec: BinaryField, values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return (int64 values, mask of values validate_value accepts: numbers equal to 0/1)."""
    array = np.zeros(len(values), dtype=np.int64)
    ok = np.zeros(len(values), dtype=bool)
    allowed = set(spec.values)
    if set(map(type, values)) <= _NUMBER_TYPES:
        try:
            numbers = np.array(values, dtype=np.float64)
        except OverflowError:
            numbers = None
        if numbers is not None:
            ok = np.zeros(len(values), dtype=bool)
            for allowed_value in spec.values:
                ok |= numbers == allowed_value
            array[ok] = numbers[ok].astype(np.int64)
            return array, ok
    for row, value in enumerate(values):
        if type(value) in _NUMBER_TYPES and value in allowed:
            array[row], ok[row] = int(value), True
    return array, ok


def categorical_column(spec: CategoricalField, values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return (codes into spec.categories, mask of allowed values)."""
    index = {category: code for code, category in enumerate(spec.categories)}
    if set(map(type, values)) == {str}:
        codes = np.array(list(map(index.get, values, repeat(-1))), dtype=np.intp)
    else:
        codes = np.fromiter(
            (index.get(v, -1) if type(v) is str else -1 for v in values), np.intp, len(values)
        )
    ok = codes >= 0
    return np.where(ok, codes, 0), ok


def validate_columns(
    values: dict[str, list[Any]], records: Sequence[Any], prevalid: np.ndarray
) -> BatchValidation:
    """Validate a batch given as one list of JSON-like values per canonical field.

    records[i] is row i as validate_record should see it (used only for rows that fail
    the fast checks); prevalid marks rows whose shape (fields present) is already fine.
    """
    n_rows = len(records)
    ok = prevalid.copy()
    numeric: dict[str, np.ndarray] = {}
    binary: dict[str, np.ndarray] = {}
    categorical: dict[str, np.ndarray] = {}
    for spec in FEATURES:
        column = values[spec.name]
        if isinstance(spec, NumericField):
            numeric[spec.name], column_ok = numeric_column(spec, column)
        elif isinstance(spec, BinaryField):
            binary[spec.name], column_ok = binary_column(spec, column)
        else:
            categorical[spec.name], column_ok = categorical_column(spec, column)
        ok &= column_ok
    result = BatchValidation(FeatureColumns(numeric, binary, categorical, n_rows))
    for row in np.flatnonzero(~ok).tolist():
        checked = validate_record(records[row])
        if checked.ok:
            set_row(result.columns, row, checked.values)
        else:
            result.row_errors[row] = checked.errors
    return result


def columns_from_clean(rows: Sequence[dict[str, Any]]) -> FeatureColumns:
    """Return the columns of records already cleaned by validate_record."""
    numeric: dict[str, np.ndarray] = {}
    binary: dict[str, np.ndarray] = {}
    categorical: dict[str, np.ndarray] = {}
    for spec in FEATURES:
        values = [row[spec.name] for row in rows]
        if isinstance(spec, NumericField):
            numeric[spec.name] = np.array(values, dtype=np.float64)  # None -> NaN
        elif isinstance(spec, BinaryField):
            binary[spec.name] = np.array(values, dtype=np.int64)
        else:
            codes = [spec.categories.index(value) for value in values]
            categorical[spec.name] = np.array(codes, dtype=np.intp)
    return FeatureColumns(numeric, binary, categorical, len(rows))


def validate_small(records: Sequence[Any]) -> BatchValidation:
    """Validate a few records with validate_record alone (cheaper than numpy below ~8)."""
    checked = [validate_record(record) for record in records]
    row_errors = {row: result.errors for row, result in enumerate(checked) if not result.ok}
    clean = [result.values if result.ok else PLACEHOLDER for result in checked]
    return BatchValidation(columns_from_clean(clean), row_errors, clean)


def validate_records(records: Sequence[Any]) -> BatchValidation:
    """Validate JSON records (dicts of field -> value, aliases allowed) as one batch."""
    if len(records) <= SMALL_BATCH:
        return validate_small(records)
    canonical = [canonical_record(record) for record in records]
    prevalid = np.fromiter((r is not None for r in canonical), bool, len(canonical))
    rows = [r if r is not None else PLACEHOLDER for r in canonical]
    values = {name: list(map(dict.get, rows, repeat(name))) for name in FEATURE_NAMES}
    return validate_columns(values, records, prevalid)


def flatten_errors(
    row_errors: dict[int, list[FieldError]], prefix: str | None
) -> list[dict[str, str]]:
    """Return error details; with a prefix, fields are named like 'instances[3].age'."""
    details: list[dict[str, str]] = []
    for row in sorted(row_errors):
        for error in row_errors[row]:
            if prefix is None:
                name = error.field
            elif error.field == "(record)":
                name = f"{prefix}[{row}]"
            else:
                name = f"{prefix}[{row}].{error.field}"
            details.append({"field": name, "message": error.message})
    return details


def metric_field(error: FieldError) -> str:
    """Return a bounded label for the validation-failure counter (never user text)."""
    if error.field in ALL_FIELDS or error.field == "(record)":
        return error.field
    return "(unknown field)"
