"""Expectations on the shipped raw data sets (they are inputs, so they are tested too)."""

import pytest

from stroke_risk.data.load import load_dataset, read_raw_csv
from stroke_risk.data.schema import TARGET
from tests.conftest import BRAIN_CSV, HEALTHCARE_CSV


@pytest.fixture(scope="module")
def healthcare():
    return load_dataset(HEALTHCARE_CSV)


def test_brain_csv_matches_its_datasheet(brain_frame):
    assert len(brain_frame) == 4981
    assert int(brain_frame[TARGET].sum()) == 248
    assert brain_frame["bmi"].notna().all()
    assert set(brain_frame["gender"]) == {"Female", "Male"}


def test_healthcare_csv_matches_its_datasheet(healthcare):
    raw = read_raw_csv(HEALTHCARE_CSV)
    assert "id" in raw.columns and raw["id"].is_unique
    assert len(healthcare) == 5110
    assert int(healthcare[TARGET].sum()) == 249
    assert int(healthcare["bmi"].isna().sum()) == 201
    assert int((healthcare["gender"] == "Other").sum()) == 1
    assert int((healthcare["work_type"] == "Never_worked").sum()) == 22


@pytest.mark.parametrize("path", [BRAIN_CSV, HEALTHCARE_CSV])
def test_labels_and_prevalence(path):
    frame = load_dataset(path)
    assert set(frame[TARGET].unique()) == {0, 1}
    assert 0.04 < frame[TARGET].mean() < 0.06


def test_brain_rows_all_come_from_the_healthcare_file(brain_frame, healthcare):
    """brain.csv is derived from the larger file: the datasheet says so, this checks it."""
    columns = ["gender", "age", "hypertension", "heart_disease", "avg_glucose_level", TARGET]
    merged = brain_frame[columns].merge(
        healthcare[columns].drop_duplicates(), on=columns, how="left", indicator=True
    )
    assert (merged["_merge"] == "both").all()


def test_children_are_coded_consistently(healthcare):
    children = healthcare[healthcare["work_type"] == "children"]
    # Checks over no rows would pass whatever the coding: the file has hundreds of children.
    assert len(children) > 100
    assert children["age"].max() < 18
    assert (children["ever_married"] == "No").all()
