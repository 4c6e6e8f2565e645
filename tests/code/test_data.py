from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from stroke_risk.data.load import (
    DataValidationError,
    drop_exact_duplicates,
    load_dataset,
    stratified_split,
)
from stroke_risk.data.schema import EXAMPLE_RECORD, FEATURE_NAMES, TARGET

HEADER = ",".join([*FEATURE_NAMES, TARGET])


def csv_line(**changes: Any) -> str:
    """One raw CSV line in HEADER's order: the schema's example record with these changes
    and the target (so a field added to the schema is filled in); None is written N/A."""
    record = {**EXAMPLE_RECORD, **changes}
    return ",".join(
        "N/A" if record[name] is None else str(record[name]) for name in HEADER.split(",")
    )


# The data set's first patients (the string edits below rely on ",61,", "Female," and "Rural").
ROWS = [
    csv_line(age=67, stroke=1),
    csv_line(
        gender="Female",
        age=61,
        heart_disease=0,
        work_type="Self-employed",
        Residence_type="Rural",
        avg_glucose_level=202.21,
        bmi=None,
        smoking_status="never smoked",
        stroke=0,
    ),
    csv_line(
        gender="Female",
        age=49,
        heart_disease=0,
        avg_glucose_level=171.23,
        bmi=34.4,
        smoking_status="smokes",
        stroke=0,
    ),
]


def write(tmp_path: Path, text: str, name: str = "raw.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(DataValidationError) as caught:
        load_dataset(path)
    return str(caught.value)


def test_valid_file_is_typed(tmp_path):
    frame = load_dataset(write(tmp_path, "\n".join([HEADER, *ROWS]) + "\n"))
    assert list(frame.columns) == [*FEATURE_NAMES, TARGET]
    assert frame["age"].dtype == float
    assert frame["bmi"].isna().tolist() == [False, True, False]
    assert frame[TARGET].tolist() == [1, 0, 0]


def test_crlf_id_column_and_any_column_order_are_accepted(tmp_path):
    original = pd.read_csv(write(tmp_path, "\n".join([HEADER, *ROWS]) + "\n", "a.csv"))
    shuffled = original[list(reversed(original.columns))].copy()
    shuffled.insert(3, "id", [11, 12, 13])
    text = shuffled.to_csv(index=False, lineterminator="\r\n")
    frame = load_dataset(write(tmp_path, text, "b.csv"))
    expected = load_dataset(tmp_path / "a.csv")
    pd.testing.assert_frame_equal(frame, expected)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("", ["file is empty"]),
        (HEADER + "\n", ["no data rows"]),
        (
            HEADER.replace(",bmi", "") + "\n" + ROWS[0].replace(",36.6", "") + "\n",
            ["missing column(s): bmi"],
        ),
        (
            "\n".join([HEADER, ROWS[0], ROWS[1].replace(",61,", ",sixty,")]) + "\n",
            ["column 'age': 1 row(s) not numeric", "'sixty'", "file lines 3"],
        ),
        (
            "\n".join([HEADER, ROWS[1], ROWS[2]]) + "\n",
            ["no positive rows"],
        ),
        (
            "\n".join([HEADER, ROWS[0], ROWS[1][:-1] + "yes"]) + "\n",
            ["column 'stroke'", "not 0 or 1", "'yes'"],
        ),
        (
            "\n".join([HEADER, ROWS[0], ROWS[1].replace("Female", "Woman")]) + "\n",
            ["column 'gender'", "'Woman'", "expected one of 'Female', 'Male', 'Other'"],
        ),
        (
            "\n".join([HEADER, ROWS[0], ROWS[1].replace(",61,", ",161,")]) + "\n",
            ["column 'age': 1 row(s) out of range", "0 to 120"],
        ),
        (
            "\n".join([HEADER, ROWS[0], ROWS[1].replace("Female,", ",")]) + "\n",
            ["column 'gender': 1 row(s) missing"],
        ),
        (
            HEADER + ",colour\n" + ROWS[0] + ",blue\n",
            ["unknown column(s): colour"],
        ),
    ],
)
def test_bad_input_names_column_and_rows(tmp_path, text, fragments):
    message = problems_of(write(tmp_path, text))
    for fragment in fragments:
        assert fragment in message


def test_all_problems_are_reported_together(tmp_path):
    rows = [ROWS[0], ROWS[1].replace(",61,", ",x,").replace("Rural", "Moon")]
    message = problems_of(write(tmp_path, "\n".join([HEADER, *rows]) + "\n"))
    assert "column 'age'" in message and "column 'Residence_type'" in message


def test_exact_duplicates_are_dropped():
    frame = pd.DataFrame({"a": [1, 1, 2], "b": ["x", "x", "x"]})
    assert drop_exact_duplicates(frame).to_dict("list") == {"a": [1, 2], "b": ["x", "x"]}


def test_split_is_stratified_disjoint_and_deterministic(brain_frame):
    split = stratified_split(brain_frame, test_size=0.2, seed=7)
    again = stratified_split(brain_frame, test_size=0.2, seed=7)
    pd.testing.assert_frame_equal(split.test, again.test)
    assert len(split.train) + len(split.test) == len(brain_frame)
    overall = brain_frame[TARGET].mean()
    assert abs(split.train[TARGET].mean() - overall) < 0.002
    assert abs(split.test[TARGET].mean() - overall) < 0.005
    # Disjoint as multisets of rows: together they are exactly the input.
    combined = pd.concat([split.train, split.test]).sort_values(list(brain_frame.columns))
    expected = brain_frame.sort_values(list(brain_frame.columns))
    pd.testing.assert_frame_equal(combined.reset_index(drop=True), expected.reset_index(drop=True))
    other = stratified_split(brain_frame, test_size=0.2, seed=8)
    assert not split.test.equals(other.test)
