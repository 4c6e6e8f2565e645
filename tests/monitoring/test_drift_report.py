"""stroke_risk.reports.drift_report: the offline drift report's figures, inputs, errors and page."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stroke_risk.commands.drift_report import main
from stroke_risk.data.load import DataValidationError
from stroke_risk.data.schema import FEATURE_NAMES, TARGET
from stroke_risk.monitoring.drift import compute_drift
from stroke_risk.monitoring.live import bin_record
from stroke_risk.monitoring.prediction_log import PredictionLog, PredictionRecord
from stroke_risk.reports.drift_report import (
    DriftReportError,
    build_drift_report,
    field_distribution,
    numeric_bin_labels,
    parse_time,
    read_log_window,
    records_from_csv,
    render_html,
    summary_text,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def aged(records: list[dict[str, Any]], years: float) -> list[dict[str, Any]]:
    """The records with every age raised (capped at the schema's maximum)."""
    return [{**record, "age": min(120.0, float(record["age"]) + years)} for record in records]


def write_csv(path: Path, records: list[dict[str, Any]], *, columns: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: "N/A" if v is None else v for k, v in record.items()})
    return path


def test_numeric_bins_are_labelled_half_open_like_the_profile_counts_them() -> None:
    assert numeric_bin_labels([10, 20.5]) == ["< 10", "[10, 20.5)", ">= 20.5"]


def test_distribution_shares_are_the_reference_bins_and_the_windows_counts(
    reference_profile: dict[str, Any],
) -> None:
    age = reference_profile["features"]["age"]
    edges = age["bin_edges"]
    # Two values in the first bin, one exactly on the last edge (the last bin), one missing.
    values = [edges[0] - 1, edges[0] - 0.5, edges[-1], None]
    distribution = field_distribution(age, values, binned=False)
    assert distribution.reference_shares == age["bin_shares"]
    assert distribution.current_shares[0] == pytest.approx(2 / 3)
    assert distribution.current_shares[-1] == pytest.approx(1 / 3)
    assert sum(distribution.current_shares) == pytest.approx(1.0)
    # Categories: the reference's first, an unseen one appended.
    gender = field_distribution(
        reference_profile["features"]["gender"], ["Male", "Male", "Robot"], binned=False
    )
    assert gender.labels[-1] == "Robot" and gender.current_shares[-1] == pytest.approx(1 / 3)
    assert gender.labels[:-1] == list(reference_profile["features"]["gender"]["category_shares"])


def test_drifted_ages_are_significant_and_the_drift_classifier_sees_them(
    reference_profile: dict[str, Any], training_records: list[dict[str, Any]]
) -> None:
    clean = build_drift_report(reference_profile, training_records[:600], source="clean")
    drifted = build_drift_report(
        reference_profile, aged(training_records[:600], 25), source="drifted"
    )
    assert clean.significant_fields() == []
    assert clean.multivariate_auc is not None and clean.multivariate_auc < 0.6
    assert drifted.significant_fields() == ["age"]
    assert drifted.multivariate_auc is not None and drifted.multivariate_auc > 0.8
    # The figures are compute_drift's, not a second implementation.
    expected = compute_drift(reference_profile, aged(training_records[:600], 25))
    assert {f.drift.feature: f.drift for f in drifted.fields} == expected.features
    assert drifted.drift_score == expected.drift_score


def test_a_binned_window_gives_the_same_psi_and_distributions_and_no_classifier(
    reference_profile: dict[str, Any], training_records: list[dict[str, Any]]
) -> None:
    records = aged(training_records[:400], 10)
    raw = build_drift_report(reference_profile, records, source="raw")
    binned = build_drift_report(
        reference_profile,
        [bin_record(reference_profile, r) for r in records],
        source="binned",
        binned=True,
    )
    for raw_field, binned_field in zip(raw.fields, binned.fields, strict=True):
        assert binned_field.drift.psi == pytest.approx(raw_field.drift.psi)
        assert binned_field.distribution.current_shares == pytest.approx(
            raw_field.distribution.current_shares
        )
    assert {f.drift.test for f in binned.fields} == {"chi2"}
    assert binned.multivariate_auc is None
    assert "binned" in (binned.multivariate_note or "")
    assert "chi-square over the reference bins" in render_html(binned)


def test_the_page_is_self_contained_and_lists_every_field(
    reference_profile: dict[str, Any], training_records: list[dict[str, Any]]
) -> None:
    report = build_drift_report(
        reference_profile, aged(training_records[:600], 25), source="a <file>.csv"
    )
    page = render_html(report)
    assert "<script" not in page
    # Nothing to fetch: no src/href attributes, no CSS url(); SVG namespaces are not fetched.
    assert not re.search(r"""\b(src|href)\s*=|url\(""", page)
    assert "a &lt;file&gt;.csv" in page
    rows = re.findall(r'<tr data-field="(\w+)">', page)
    assert rows == list(FEATURE_NAMES)
    assert re.search(r'<tr data-field="age">.*?<span class="significant">', page)
    assert page.count('<figure class="distribution"') == len(FEATURE_NAMES)
    assert page.count("<svg") == len(FEATURE_NAMES) + 1  # plus the multivariate figure


def test_a_csv_without_the_stroke_column_is_a_valid_input(
    tmp_path: Path, training_records: list[dict[str, Any]]
) -> None:
    path = write_csv(tmp_path / "new.csv", training_records[:20], columns=list(FEATURE_NAMES))
    records = records_from_csv(path)
    assert records == [
        {k: (None if v is None or v != v else v) for k, v in r.items()}
        for r in training_records[:20]
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows, cols: (rows, [c for c in cols if c != "bmi"]), "missing column(s): bmi"),
        (
            lambda rows, cols: ([{**rows[0], "age": "old"}, *rows[1:]], cols),
            "column 'age': 1 row(s) not numeric: 'old' (file lines 2)",
        ),
        (
            lambda rows, cols: ([*rows[:3], {**rows[3], "work_type": "Pirate"}], cols),
            "column 'work_type': 1 row(s) with unknown value(s) 'Pirate'",
        ),
    ],
)
def test_bad_csv_is_one_line_naming_the_column_and_row(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reference_profile_file: Path,
    training_records: list[dict[str, Any]],
    edit: Any,
    message: str,
) -> None:
    rows, columns = edit(training_records[:10], [*FEATURE_NAMES, TARGET])
    path = write_csv(tmp_path / "bad.csv", rows, columns=columns)
    out = tmp_path / "report.html"
    code = main(
        ["--data", str(path), "--reference", str(reference_profile_file), "--out", str(out)]
    )
    error = capsys.readouterr().err
    assert code == 2
    assert len(error.strip().splitlines()) == 1, error
    assert error.startswith(f"drift-report: {path}: ") and message in error
    assert not out.exists()


def test_times_are_relative_to_now_or_iso_8601() -> None:
    assert parse_time("24h", now=NOW) == NOW - timedelta(hours=24)
    assert parse_time("90m", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_time("2026-12-01T08:00", now=NOW) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="use e.g. 24h"):
        parse_time("yesterday", now=NOW)


@pytest.fixture
def reference_profile_file(tmp_path: Path, reference_profile: dict[str, Any]) -> Path:
    path = tmp_path / "reference_profile.json"
    path.write_text(json.dumps(reference_profile))
    return path


def log_records(
    log_path: Path, records: list[dict[str, Any]], *, at: float, prefix: str, version: str = "v1"
) -> None:
    """Store records in a real prediction log as if the service logged them at time `at`."""
    log = PredictionLog(log_path, clock=lambda: at)
    log.record_predictions(
        [
            PredictionRecord(f"{prefix}-{i}", record, 0.1, False, version)
            for i, record in enumerate(records)
        ]
    )
    log.close()


def test_a_log_window_is_read_between_since_and_until(
    tmp_path: Path,
    reference_profile: dict[str, Any],
    training_records: list[dict[str, Any]],
    reference_profile_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log_path = tmp_path / "predictions.sqlite"
    day = NOW.timestamp() - 86400
    log_records(log_path, training_records[:300], at=day - 3600, prefix="old")
    log_records(log_path, aged(training_records[300:700], 25), at=day + 3600, prefix="new")
    window = read_log_window(
        log_path, since=datetime.fromtimestamp(day, UTC), until=NOW, model_version=None
    )
    assert len(window.records) == 400 and not window.binned
    assert window.model_versions == ["v1"]
    before = read_log_window(log_path, since=None, until=datetime.fromtimestamp(day, UTC))
    assert len(before.records) == 300
    out = tmp_path / "report.html"
    since = datetime.fromtimestamp(day, UTC).isoformat()
    code = main(
        ["--log", str(log_path), "--since", since, "--reference", str(reference_profile_file)]
        + ["--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert re.search(r"^age +\d+\.\d{3}  significant", printed, re.M), printed
    assert "400 records" in printed and "model version v1" in printed
    assert '<tr data-field="age">' in out.read_text()


def test_a_binned_log_is_recognised_and_a_mixed_one_refused(
    tmp_path: Path, reference_profile: dict[str, Any], training_records: list[dict[str, Any]]
) -> None:
    log_path = tmp_path / "predictions.sqlite"
    binned = [bin_record(reference_profile, r) for r in training_records[:50]]
    log_records(log_path, binned, at=1000.0, prefix="binned")
    assert read_log_window(log_path, since=None, until=None).binned
    # The service stores validated numbers as floats: that is how raw rows are told apart.
    raw = [{**r, "age": float(r["age"])} for r in training_records[50:60]]
    log_records(log_path, raw, at=2000.0, prefix="raw")
    with pytest.raises(DriftReportError, match=r"mixes raw \(row seq 51\) and binned"):
        read_log_window(log_path, since=None, until=None)
    later = datetime.fromtimestamp(1500.0, UTC)
    assert not read_log_window(log_path, since=later, until=None).binned


def test_a_missing_log_or_an_empty_window_is_one_line_and_creates_nothing(
    tmp_path: Path, reference_profile_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "predictions.sqlite"
    out = tmp_path / "report.html"
    code = main(
        ["--log", str(missing), "--reference", str(reference_profile_file)] + ["--out", str(out)]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"drift-report: {missing}: no such prediction log (STROKE_MONITOR_DB)"
    )
    assert not missing.parent.exists() and not out.exists()
    empty = tmp_path / "empty.sqlite"
    PredictionLog(empty).close()
    code = main(
        ["--log", str(empty), "--since", "1h", "--reference", str(reference_profile_file)]
        + ["--out", str(out)]
    )
    error = capsys.readouterr().err
    assert code == 2 and "no predictions in the window from" in error, error
    assert len(error.strip().splitlines()) == 1


def test_the_log_is_opened_read_only(
    tmp_path: Path, training_records: list[dict[str, Any]]
) -> None:
    log_path = tmp_path / "predictions.sqlite"
    log_records(log_path, training_records[:5], at=1000.0, prefix="a")
    before = log_path.read_bytes()
    read_log_window(log_path, since=None, until=None)
    assert log_path.read_bytes() == before
    with sqlite3.connect(log_path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM predictions").fetchone() == (5,)


README = Path(__file__).resolve().parents[2] / "README.md"
README_MARKER = "<!-- drift-report example: make drift-report DATA=data/prepared/test.csv -->"


def test_the_readme_example_is_the_commands_output_on_the_test_split() -> None:
    repo = README.parent
    test_split = repo / "data" / "prepared" / "test.csv"
    profile = repo / "models" / "reference_profile.json"
    assert test_split.is_file() and profile.is_file(), "run dvc repro first"
    text = README.read_text()
    assert README_MARKER in text
    block = text.split(README_MARKER, 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    shown = [line.removeprefix("  ") for line in block.rstrip().splitlines()]
    report = build_drift_report(
        json.loads(profile.read_text()),
        records_from_csv(test_split),
        source="data/prepared/test.csv",
    )
    assert shown == [*summary_text(report).splitlines(), "wrote drift-report.html"]


def test_a_stroke_column_may_hold_one_class_but_not_other_values(
    tmp_path: Path, training_records: list[dict[str, Any]]
) -> None:
    rows = [{**record, TARGET: 0} for record in training_records[:5]]
    path = write_csv(tmp_path / "scored.csv", rows, columns=[*FEATURE_NAMES, TARGET])
    assert len(records_from_csv(path)) == 5  # training would refuse a single class
    rows[2][TARGET] = 7
    path = write_csv(tmp_path / "bad.csv", rows, columns=[*FEATURE_NAMES, TARGET])
    with pytest.raises(DataValidationError, match=r"column 'stroke': 1 row\(s\) not 0 or 1: '7'"):
        records_from_csv(path)
