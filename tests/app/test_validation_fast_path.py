"""The column-wise validator agrees with stroke_risk.data.schema.validate_record on every record."""

from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from app.columns import FeatureColumns
from app.ids import new_prediction_ids
from app.metrics import PROBABILITY_BUCKETS, observe_many
from app.payload import parse_json
from app.validation import SMALL_BATCH, validate_records
from stroke_risk.data.schema import (
    FEATURES,
    BinaryField,
    CategoricalField,
    NumericField,
    validate_record,
)
from tests.app.conftest import RECORD

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


def valid_values(spec: Any) -> st.SearchStrategy:
    """Values validate_record accepts, boundaries and int/float spellings included."""
    if isinstance(spec, NumericField):
        values = st.one_of(
            st.floats(spec.minimum, spec.maximum),
            st.integers(int(spec.minimum), int(spec.maximum)),
            st.sampled_from([spec.minimum, spec.maximum]),
        )
        return st.one_of(values, st.none()) if spec.nullable else values
    if isinstance(spec, BinaryField):
        return st.sampled_from([0, 1, 0.0, 1.0])
    assert isinstance(spec, CategoricalField)
    return st.sampled_from(spec.categories)


def near_miss_values(spec: Any) -> st.SearchStrategy:
    """Values that look almost right for the field, plus every JSON type."""
    if isinstance(spec, NumericField):
        edges = [spec.minimum - 1e-9, spec.maximum + 1e-9, math.nan, math.inf, -math.inf]
        near = st.sampled_from([*edges, str(spec.minimum), True, False])
    elif isinstance(spec, BinaryField):
        near = st.sampled_from([2, -1, 0.5, True, False, "1", math.nan, 10**30])
    else:
        assert isinstance(spec, CategoricalField)
        near = st.sampled_from([spec.categories[0].lower(), spec.categories[0] + " ", "", 0])
    return st.one_of(near, near, ODD_VALUES)


@st.composite
def records(draw: Any) -> Any:
    """A valid record with 0-2 fields spoiled (removed or replaced), now and then odder."""
    if draw(st.integers(0, 40)) == 0:
        return draw(ODD_VALUES)  # not an object at all
    record = {spec.name: draw(valid_values(spec)) for spec in FEATURES}
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        spec = draw(st.sampled_from(FEATURES))
        if draw(st.integers(0, 5)) == 0:
            record.pop(spec.name, None)
        else:
            record[spec.name] = draw(near_miss_values(spec))
    if draw(st.integers(0, 10)) == 0 and "Residence_type" in record:
        record["residence_type"] = record.pop("Residence_type")
    if draw(st.integers(0, 30)) == 0:
        record["residence_type"] = "Urban"  # possibly doubled through the alias
    if draw(st.integers(0, 30)) == 0:
        record[draw(st.text(max_size=6))] = 1
    return record


def row_values(columns: FeatureColumns, row: int) -> dict[str, Any]:
    """Return row of the columns in validate_record's clean-value form."""
    values: dict[str, Any] = {}
    for spec in FEATURES:
        if isinstance(spec, NumericField):
            number = float(columns.numeric[spec.name][row])
            values[spec.name] = None if math.isnan(number) else number
        elif isinstance(spec, BinaryField):
            values[spec.name] = int(columns.binary[spec.name][row])
        else:
            values[spec.name] = spec.categories[int(columns.categorical[spec.name][row])]
    return values


# database=None: hypothesis would otherwise keep examples in .hypothesis/ in the repo.
# 250 examples under hypothesis' default profile (100), scaled with the loaded one (make check
# loads "check", tests/conftest.py).
PROPERTY_SETTINGS = settings(
    max_examples=250 * settings.default.max_examples // 100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


@PROPERTY_SETTINGS
@given(st.lists(records(), min_size=1, max_size=SMALL_BATCH))
def test_small_batch_validation_equals_validate_record(batch: list[Any]) -> None:
    assert_agrees_with_validate_record(batch)


@PROPERTY_SETTINGS
@given(st.lists(records(), min_size=SMALL_BATCH + 1, max_size=6 * SMALL_BATCH))
def test_column_validation_equals_validate_record(batch: list[Any]) -> None:
    """Batches above SMALL_BATCH take the vectorised column checks."""
    assert_agrees_with_validate_record(batch)


def assert_agrees_with_validate_record(batch: list[Any]) -> None:
    """Every row: same errors as validate_record, or the same clean values."""
    result = validate_records(batch)
    for row, record in enumerate(batch):
        expected = validate_record(record)
        if expected.ok:
            assert row not in result.row_errors
            assert row_values(result.columns, row) == expected.values
        else:
            assert result.row_errors[row] == expected.errors


def test_mostly_valid_large_batch_takes_the_column_path_and_agrees() -> None:
    batch = [dict(RECORD, age=float(age % 120)) for age in range(500)]
    batch[123] = dict(RECORD, age="old")
    batch[321] = dict(RECORD, bmi=math.nan)
    result = validate_records(batch)
    assert sorted(result.row_errors) == [123, 321]
    assert result.row_errors[123] == validate_record(batch[123]).errors
    assert row_values(result.columns, 7) == validate_record(batch[7]).values


def test_columns_round_trip_to_frame_and_records() -> None:
    batch = [RECORD, dict(RECORD, bmi=None, gender="Other")]
    columns = validate_records(batch).columns
    assert columns.to_records() == [RECORD, dict(RECORD, bmi=None, gender="Other")]
    frame = columns.to_frame()
    assert list(frame["gender"]) == ["Male", "Other"] and math.isnan(frame["bmi"][1])
    assert columns.take(np.array([1])).to_records()[0]["gender"] == "Other"


def test_json_parser_turns_overlong_integers_into_infinity() -> None:
    assert parse_json(b'{"age": ' + b"9" * 400 + b"}")["age"] == math.inf
    assert parse_json(b'{"age": 67}')["age"] == 67
    assert math.isnan(parse_json(b'{"age": NaN}')["age"])


def test_bulk_histogram_observation_equals_repeated_observe() -> None:
    values = np.concatenate([np.random.default_rng(0).random(500), [0.0, 0.01, 0.5, 1.0]])
    one, many = CollectorRegistry(), CollectorRegistry()
    single = Histogram("p", "p", buckets=PROBABILITY_BUCKETS, registry=one)
    bulk = Histogram("p", "p", buckets=PROBABILITY_BUCKETS, registry=many)
    for value in values:
        single.observe(float(value))
    observe_many(bulk, values)

    def samples(registry: CollectorRegistry) -> dict[str, float]:
        return {
            s.name + str(s.labels): s.value
            for m in registry.collect()
            for s in m.samples
            if not s.name.endswith("_created")
        }

    expected, actual = samples(one), samples(many)
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        assert math.isclose(actual[key], value, rel_tol=1e-12), key


def test_prediction_ids_are_unique_uuid7_hex_and_batches_share_a_token() -> None:
    batch, other_batch, single = (
        new_prediction_ids(10_000),
        new_prediction_ids(2),
        new_prediction_ids(1),
    )
    ids = batch + other_batch + single
    assert len(set(ids)) == len(ids)
    for value in batch[:200] + other_batch + single:
        parsed = uuid.UUID(hex=value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and parsed.hex == value
    assert len({value[:16] for value in batch}) == 1  # the batch token
    assert batch[0][:16] != other_batch[0][:16]
