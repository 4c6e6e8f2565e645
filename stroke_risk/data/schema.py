"""The one definition of the ten input fields and the target.

Preparation validates raw data against it, the API validates requests against it, the
monitor computes drift per field from it and the OpenAPI document is generated from it.

Clinical bounds are deliberately wider than the data set's observed ranges (so real
patients outside the sample are still scored) but exclude physically impossible values:

- age 0-120 years (the data set has infants coded as fractional years, e.g. 0.08);
- avg_glucose_level 40-400 mg/dL (observed 55-272; below 40 is severe hypoglycaemia and
  above 400 a hyperglycaemic emergency, both far outside the population this model saw);
- bmi 10-100 kg/m^2 (observed 10.3-97.6); bmi may be missing and is then imputed.
"""

from __future__ import annotations

import functools
import math
import reprlib
from dataclasses import dataclass, field
from typing import Any, Literal

TARGET = "stroke"
ID_COLUMN = "id"


@dataclass(frozen=True)
class NumericField:
    name: str
    minimum: float
    maximum: float
    unit: str
    description: str
    nullable: bool = False
    kind: Literal["numeric"] = "numeric"


@dataclass(frozen=True)
class BinaryField:
    name: str
    description: str
    kind: Literal["binary"] = "binary"
    values: tuple[int, ...] = (0, 1)


@dataclass(frozen=True)
class CategoricalField:
    name: str
    categories: tuple[str, ...]
    description: str
    kind: Literal["categorical"] = "categorical"


Field = NumericField | BinaryField | CategoricalField

FEATURES: tuple[Field, ...] = (
    CategoricalField("gender", ("Female", "Male", "Other"), "Patient gender"),
    NumericField("age", 0.0, 120.0, "years", "Age in years (fractional for infants)"),
    BinaryField("hypertension", "1 if the patient has hypertension"),
    BinaryField("heart_disease", "1 if the patient has any heart disease"),
    CategoricalField("ever_married", ("No", "Yes"), "Ever married"),
    CategoricalField(
        "work_type",
        ("Govt_job", "Never_worked", "Private", "Self-employed", "children"),
        "Type of work ('children' for minors)",
    ),
    CategoricalField("Residence_type", ("Rural", "Urban"), "Residence area type"),
    NumericField("avg_glucose_level", 40.0, 400.0, "mg/dL", "Average blood glucose level"),
    NumericField("bmi", 10.0, 100.0, "kg/m^2", "Body-mass index; null if unknown", nullable=True),
    CategoricalField(
        "smoking_status",
        ("Unknown", "formerly smoked", "never smoked", "smokes"),
        "Smoking status ('Unknown' if not recorded)",
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURES_BY_NAME: dict[str, Field] = {f.name: f for f in FEATURES}
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if isinstance(f, NumericField))
BINARY_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if isinstance(f, BinaryField))
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(
    f.name for f in FEATURES if isinstance(f, CategoricalField)
)
# The fields the evaluation reports per subgroup (reports/evaluation.json `subgroups`): a
# categorical or binary field by its values, a numeric field by the bands of the feature
# config's `<name>_band_edges` (reported as `<name>_band`).
SUBGROUP_FIELDS: tuple[str, ...] = ("gender", "age", "hypertension")

# A valid record (the first patient of the data set): the OpenAPI example, and the fixture
# that tests and benchmarks start from. Treat as read-only; copy with dict(EXAMPLE_RECORD).
EXAMPLE_RECORD: dict[str, Any] = {
    "gender": "Male",
    "age": 67.0,
    "hypertension": 0,
    "heart_disease": 1,
    "ever_married": "Yes",
    "work_type": "Private",
    "Residence_type": "Urban",
    "avg_glucose_level": 228.69,
    "bmi": 36.6,
    "smoking_status": "formerly smoked",
}
# Alternative spellings accepted on input (the original project's API used lower case).
FIELD_ALIASES: dict[str, str] = {"residence_type": "Residence_type"}


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of one record, phrased for the person who sent it."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class RecordValidation:
    """Outcome of validating one record: the cleaned values, or every problem found."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@functools.cache
def describe_allowed(spec: Field) -> str:
    """Human-readable statement of a field's allowed values, used in error messages."""
    if isinstance(spec, NumericField):
        text = f"a number from {spec.minimum:g} to {spec.maximum:g} {spec.unit}"
        return text + (" or null" if spec.nullable else "")
    if isinstance(spec, BinaryField):
        return "0 or 1"
    return "one of " + ", ".join(repr(c) for c in spec.categories)


# Quoting of rejected values: short, one line, whatever was sent (huge strings, deep lists).
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxdict, _QUOTE.maxlist, _QUOTE.maxtuple = 2, 4, 4, 4
_QUOTE.maxstring, _QUOTE.maxlong, _QUOTE.maxother = 60, 40, 60
MAX_QUOTED_LENGTH = 80


def quoted(value: Any) -> str:
    """Return the value as an error message quotes it: its repr, cut to 80 characters.

    ``quoted("abc") == "'abc'"``; long strings and containers are abbreviated with '...'.
    """
    try:
        text = _QUOTE.repr(value)
    except (ValueError, RecursionError):  # e.g. an int past Python's digit limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= MAX_QUOTED_LENGTH else text[: MAX_QUOTED_LENGTH - 3] + "..."


def _is_number(value: Any) -> bool:
    # bool is an int subclass in Python; JSON true/false is not a number here.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_value(spec: Field, value: Any) -> tuple[Any, str | None]:
    """Check one value against its field; return (clean value, None) or (None, message).

    A message names what is allowed and quotes the value given (``got 'abc'``).
    """
    if value is None:
        if isinstance(spec, NumericField) and spec.nullable:
            return None, None
        return None, f"is required and may not be null; expected {describe_allowed(spec)}"
    if isinstance(spec, NumericField):
        if not _is_number(value):
            return None, f"must be {describe_allowed(spec)}, got {quoted(value)}"
        try:
            number = float(value)
        except OverflowError:  # an int with hundreds of digits
            return None, f"is out of range; expected {describe_allowed(spec)}, got {quoted(value)}"
        if not math.isfinite(number):
            return None, (
                f"must be a finite number; expected {describe_allowed(spec)}, got {quoted(value)}"
            )
        if not spec.minimum <= number <= spec.maximum:
            return None, f"{number:g} is out of range; expected {describe_allowed(spec)}"
        return number, None
    if isinstance(spec, BinaryField):
        if not _is_number(value) or value not in spec.values:
            return None, f"must be {describe_allowed(spec)}, got {quoted(value)}"
        return int(value), None
    if not isinstance(value, str):
        return None, f"must be a string, {describe_allowed(spec)}; got {quoted(value)}"
    if value not in spec.categories:
        return None, f"{quoted(value)} is not allowed; expected {describe_allowed(spec)}"
    return value, None


def validate_record(record: Any) -> RecordValidation:
    """Validate one input record (a mapping of field name to JSON value).

    Every problem is reported, not just the first. Unknown fields are errors so that a
    misspelt field is never silently imputed. ``bmi`` may be absent (treated as null).
    """
    result = RecordValidation()
    if not isinstance(record, dict):
        result.errors.append(FieldError("(record)", f"must be a JSON object, got {quoted(record)}"))
        return result
    normalised: dict[str, Any] = {}
    for key, value in record.items():
        canonical = FIELD_ALIASES.get(key, key)
        if canonical not in FEATURES_BY_NAME:
            result.errors.append(
                FieldError(
                    str(key)[:60],
                    "unknown field; allowed fields are " + ", ".join(FEATURE_NAMES),
                )
            )
            continue
        if canonical in normalised:
            result.errors.append(
                FieldError(canonical, f"given twice (also as an alias of {canonical})")
            )
            continue
        normalised[canonical] = value
    for spec in FEATURES:
        if spec.name not in normalised:
            if isinstance(spec, NumericField) and spec.nullable:
                result.values[spec.name] = None
                continue
            result.errors.append(
                FieldError(spec.name, f"is required; expected {describe_allowed(spec)}")
            )
            continue
        clean, message = validate_value(spec, normalised[spec.name])
        if message is None:
            result.values[spec.name] = clean
        else:
            result.errors.append(FieldError(spec.name, message))
    return result


def record_json_schema() -> dict[str, Any]:
    """JSON Schema (OpenAPI 3.1 dialect) of one input record, derived from FEATURES."""
    properties: dict[str, Any] = {}
    for spec in FEATURES:
        if isinstance(spec, NumericField):
            prop: dict[str, Any] = {
                "type": ["number", "null"] if spec.nullable else "number",
                "minimum": spec.minimum,
                "maximum": spec.maximum,
            }
        elif isinstance(spec, BinaryField):
            prop = {"type": "integer", "enum": list(spec.values)}
        else:
            prop = {"type": "string", "enum": list(spec.categories)}
        prop["description"] = spec.description + (
            f" ({spec.unit})" if isinstance(spec, NumericField) else ""
        )
        properties[spec.name] = prop
    required = [s.name for s in FEATURES if not (isinstance(s, NumericField) and s.nullable)]
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
