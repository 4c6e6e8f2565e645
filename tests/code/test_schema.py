import math

import pytest

from stroke_risk.data.schema import (
    EXAMPLE_RECORD,
    FEATURE_NAMES,
    FEATURES_BY_NAME,
    NumericField,
    record_json_schema,
    validate_record,
)

VALID = dict(EXAMPLE_RECORD)


def fields_of(result):
    return sorted(error.field for error in result.errors)


def test_valid_record_is_clean():
    result = validate_record(VALID)
    assert result.ok
    assert result.values == VALID


def test_lower_case_residence_alias_is_accepted():
    record = dict(VALID)
    record["residence_type"] = record.pop("Residence_type")
    result = validate_record(record)
    assert result.ok and result.values["Residence_type"] == "Urban"


def test_alias_and_canonical_name_together_is_an_error():
    result = validate_record({**VALID, "residence_type": "Rural"})
    assert fields_of(result) == ["Residence_type"]


@pytest.mark.parametrize("bmi", [None, "absent"])
def test_bmi_may_be_null_or_absent(bmi):
    record = dict(VALID)
    if bmi == "absent":
        del record["bmi"]
    else:
        record["bmi"] = None
    result = validate_record(record)
    assert result.ok and result.values["bmi"] is None


def test_every_problem_is_reported_at_once():
    record = {**VALID, "age": "old", "gender": "Unknown", "hypertension": 2, "colour": "blue"}
    del record["work_type"]
    result = validate_record(record)
    assert fields_of(result) == ["age", "colour", "gender", "hypertension", "work_type"]


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("age", "67", "must be a number"),
        ("age", [67], "must be a number"),
        ("age", {"v": 1}, "must be a number"),
        ("age", True, "must be a number"),
        ("age", None, "may not be null"),
        ("age", 121, "out of range"),
        ("age", -1, "out of range"),
        ("age", math.nan, "finite"),
        ("age", math.inf, "finite"),
        ("age", 10**400, "out of range"),
        ("avg_glucose_level", 39.9, "out of range"),
        ("bmi", 150, "out of range"),
        ("hypertension", 1.5, "0 or 1"),
        ("hypertension", "1", "0 or 1"),
        ("gender", "male", "not allowed"),
        ("smoking_status", 3, "must be a string"),
    ],
)
def test_bad_values_are_named_with_the_allowed_range(field, value, fragment):
    result = validate_record({**VALID, field: value})
    assert fields_of(result) == [field]
    assert fragment in result.errors[0].message


def test_out_of_range_message_states_the_bounds():
    result = validate_record({**VALID, "age": 130})
    assert "0 to 120 years" in result.errors[0].message


def test_full_domain_includes_categories_absent_from_brain_csv():
    result = validate_record({**VALID, "gender": "Other", "work_type": "Never_worked"})
    assert result.ok


def test_non_object_record_is_rejected():
    assert fields_of(validate_record([VALID])) == ["(record)"]


def test_json_schema_matches_the_schema_definition():
    schema = record_json_schema()
    assert list(schema["properties"]) == list(FEATURE_NAMES)
    assert "bmi" not in schema["required"]
    assert set(schema["required"]) == set(FEATURE_NAMES) - {"bmi"}
    age = FEATURES_BY_NAME["age"]
    assert isinstance(age, NumericField)
    assert schema["properties"]["age"]["maximum"] == age.maximum
    assert schema["properties"]["gender"]["enum"] == ["Female", "Male", "Other"]
