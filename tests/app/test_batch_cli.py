"""python -m app.batch: streams a CSV, scores valid rows, rejects the rest, loses nothing."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from app.batch import main, score_file
from app.model import LoadedModel
from app.settings import Settings
from stroke_risk.data.schema import EXAMPLE_RECORD, FEATURE_NAMES
from tests.conftest import HEALTHCARE_CSV, REPO_ROOT

# The healthcare CSV's columns (id, the schema's fields, stroke), in its order.
COLUMNS = HEALTHCARE_CSV.read_text().split("\n", 1)[0].split(",")
# The cells the lines below start from: the schema's example (so a field added to the schema
# is filled in) as a 50-year-old without risk factors.
ADULT: dict[str, Any] = {
    **EXAMPLE_RECORD,
    "gender": "Female",
    "age": 50,
    "hypertension": 0,
    "heart_disease": 0,
    "ever_married": "Yes",
    "work_type": "Private",
    "Residence_type": "Urban",
    "avg_glucose_level": 100,
    "bmi": 25,
    "smoking_status": "Unknown",
    "stroke": 0,
}


def line(patient_id: int, **cells: Any) -> str:
    """One CSV line in COLUMNS' order: ADULT with these cells (written as given; None: N/A)."""
    row = {**ADULT, "id": patient_id, **cells}
    return ",".join("N/A" if row[name] is None else str(row[name]) for name in COLUMNS)


BAD_LINES = [
    line(1, age=200, bmi=None, smoking_status="smokes"),  # age out of range
    line(2, age="abc", smoking_status="smokes"),  # age not a number
    line(3, gender="female", smoking_status="smokes"),  # unknown category
    line(4, hypertension=2),  # binary not 0/1
    line(5, avg_glucose_level=""),  # required value missing
    line(6).rsplit(",", 2)[0],  # too few fields
    line(7) + ",extra",  # too many fields
    line(8, avg_glucose_level="inf"),  # not finite
]
GOOD_LINES = [
    line(  # full domain, missing bmi
        9,
        gender="Other",
        age=40,
        heart_disease=1,
        ever_married="No",
        work_type="Never_worked",
        Residence_type="Rural",
        avg_glucose_level=90,
        bmi="NA",
    ),
    line(  # quoted cells
        10,
        gender='"Male"',
        age=67,
        heart_disease=1,
        avg_glucose_level=228.69,
        bmi=36.6,
        smoking_status='"formerly smoked"',
        stroke=1,
    ),
]


@pytest.fixture
def input_csv(tmp_path: Path) -> Path:
    """The healthcare CSV (with id and stroke columns) plus bad rows and a blank line."""
    return mixed_csv(tmp_path / "in.csv")


def mixed_csv(path: Path, data_rows: int | None = None) -> Path:
    """Write the healthcare CSV's header and first data_rows rows (all when None), then the
    bad rows and a blank line, then good rows."""
    lines = HEALTHCARE_CSV.read_text().rstrip("\n").split("\n")
    text = "\n".join(lines if data_rows is None else lines[: data_rows + 1])
    path.write_text(
        text
        + "\n"
        + "\n".join(BAD_LINES[:4])
        + "\n\n"
        + "\n".join(BAD_LINES[4:] + GOOD_LINES)
        + "\n"
    )
    return path


def test_every_row_is_scored_or_rejected(
    input_csv: Path, tmp_path: Path, logreg_model: LoadedModel
) -> None:
    output, rejects = tmp_path / "out.csv", tmp_path / "rejects.csv"
    summary = score_file(logreg_model, input_csv, output, rejects, chunk_rows=333)
    rows_in = 5110 + len(BAD_LINES) + len(GOOD_LINES)
    assert (summary.rows_in, summary.scored, summary.rejected) == (
        rows_in,
        5110 + 2,
        len(BAD_LINES),
    )
    scored = pd.read_csv(output, keep_default_na=False, na_values=[""], dtype={"bmi": str})
    assert len(scored) == summary.scored
    assert list(scored.columns) == [
        "id",
        *FEATURE_NAMES,
        "stroke",
        "stroke_probability",
        "stroke_prediction",
    ]
    assert scored["id"].tolist()[-2:] == [9, 10]  # input order kept
    with open(rejects, newline="") as handle:
        reject_rows = list(csv.reader(handle))
    assert reject_rows[0][:3] == ["line", "reason", "id"]
    reasons = {row[2]: row[1] for row in reject_rows[1:]}
    assert set(reasons) == {str(i) for i in range(1, 9)}
    assert "age: 200 is out of range" in reasons["1"]
    # Every reason names the field and quotes the value as read (issue 13 item 8).
    assert reasons["2"] == "age: must be a number from 0 to 120 years, got 'abc'"
    assert "gender: 'female' is not allowed" in reasons["3"]
    assert reasons["4"] == "hypertension: must be 0 or 1, got 2.0"
    assert "avg_glucose_level: is required" in reasons["5"]
    assert f"expected {len(COLUMNS)} fields, got {len(COLUMNS) - 2}" in reasons["6"]
    assert f"got {len(COLUMNS) + 1}" in reasons["7"]
    assert "finite" in reasons["8"] and reasons["8"].endswith("got inf")
    lines = {row[2]: int(row[0]) for row in reject_rows[1:]}
    assert lines["1"] == 5112 and lines["5"] == 5117  # file line numbers, blank line counted


def test_scores_equal_the_pipeline_and_use_the_threshold(
    input_csv: Path,
    tmp_path: Path,
    logreg_model: LoadedModel,
    shipped_frames: dict,
    fitted_pipelines: dict,
) -> None:
    """app.batch scores with the data-only artifact; the pickled pipeline it came from (in
    the test process only) gives the same probabilities."""
    output = tmp_path / "out.csv"
    score_file(logreg_model, input_csv, output, tmp_path / "rejects.csv", chunk_rows=1000)
    scored = pd.read_csv(output).head(5110)
    expected = fitted_pipelines["logreg"].predict_proba(
        shipped_frames["healthcare"][list(FEATURE_NAMES)]
    )[:, 1]
    assert np.max(np.abs(scored["stroke_probability"].to_numpy() - expected)) <= 1e-9
    decided = (scored["stroke_probability"] >= logreg_model.threshold).astype(int)
    assert (scored["stroke_prediction"] == decided).all()


def test_chunk_size_does_not_change_the_output(tmp_path: Path, logreg_model: LoadedModel) -> None:
    # 500 rows: chunks of one row each cost a call per row.
    input_csv = mixed_csv(tmp_path / "in.csv", data_rows=500)
    scored, rejected = [], []
    for chunk_rows in (1, 7, 100_000):
        output, rejects = tmp_path / f"out-{chunk_rows}.csv", tmp_path / f"rejects-{chunk_rows}.csv"
        score_file(logreg_model, input_csv, output, rejects, chunk_rows)
        scored.append(pd.read_csv(output, dtype=str))
        rejected.append(rejects.read_bytes())
    assert rejected[0] == rejected[1] == rejected[2]
    for frame in scored[1:]:
        # One-row and many-row matrix products may round the last bit differently.
        pd.testing.assert_frame_equal(
            frame.drop(columns="stroke_probability"), scored[0].drop(columns="stroke_probability")
        )
        difference = frame["stroke_probability"].astype(float) - scored[0][
            "stroke_probability"
        ].astype(float)
        assert difference.abs().max() <= 1e-12


@pytest.mark.integration
def test_cli_entry_point(input_csv: Path, tmp_path: Path, logreg_settings: Settings) -> None:
    output = tmp_path / "scored.csv"
    result = subprocess.run(
        [sys.executable, "-m", "app.batch", str(input_csv), str(output)],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "STROKE_PROJECT_DIR": str(logreg_settings.project_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"{5110 + 10} rows in: 5112 scored" in result.stderr
    assert (tmp_path / "scored.rejects.csv").exists()


def test_missing_column_is_exit_2_with_one_line(
    tmp_path: Path,
    logreg_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("gender,age\nMale,50\n")
    monkeypatch.setenv("STROKE_PROJECT_DIR", str(logreg_settings.project_dir))
    assert main([str(source), str(tmp_path / "out.csv")]) == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "missing column(s) hypertension" in message
    assert not (tmp_path / "out.csv").exists()


def test_missing_model_is_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("STROKE_PROJECT_DIR", str(tmp_path))
    source = tmp_path / "in.csv"
    source.write_text(HEALTHCARE_CSV.read_text())
    assert main([str(source), str(tmp_path / "out.csv")]) == 1
    assert "cannot load the model" in capsys.readouterr().err
