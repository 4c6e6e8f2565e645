"""The traffic simulator's pure parts: drift specs, safety checks, response parsing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from monitoring.simulate import (
    DriftSpec,
    ScoredRecord,
    apply_drift,
    build_parser,
    choose_label,
    config_from_args,
    is_loopback_url,
    parse_drift,
    parse_predictions,
    predict_payload,
    synthetic_row,
)
from stroke_risk.data.schema import EXAMPLE_RECORD, FEATURE_NAMES, validate_record

# Built on the schema's example, so a field added to the schema is present here too.
RECORD: dict[str, Any] = {
    **EXAMPLE_RECORD,
    "gender": "Male",
    "age": 80.0,
    "hypertension": 0,
    "heart_disease": 1,
    "ever_married": "Yes",
    "work_type": "Private",
    "Residence_type": "Rural",
    "avg_glucose_level": 105.92,
    "bmi": 32.5,
    "smoking_status": "never smoked",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age+25", DriftSpec("age", "+", 25.0)),
        ("age-10", DriftSpec("age", "-", 10.0)),
        ("avg_glucose_level*1.5", DriftSpec("avg_glucose_level", "*", 1.5)),
        ("smoking_status=smokes", DriftSpec("smoking_status", "=", "smokes")),
        ("work_type=Self-employed@0.5", DriftSpec("work_type", "=", "Self-employed", 0.5)),
        ("smoking_status=formerly smoked", DriftSpec("smoking_status", "=", "formerly smoked")),
        ("hypertension=1", DriftSpec("hypertension", "=", 1)),
        ("bmi=null@0.3", DriftSpec("bmi", "=", None, 0.3)),
    ],
)
def test_parse_drift(text: str, expected: DriftSpec) -> None:
    assert parse_drift(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("height+3", "unknown field"),
        ("gender+1", "numeric fields only"),
        ("smoking_status=cigars", "expected one of"),
        ("age=null", "may not be missing"),
        ("hypertension=2", "0 or 1"),
        ("age=500", "outside"),
        ("age+25@1.5", "share"),
        ("age", "cannot parse"),
    ],
)
def test_parse_drift_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_drift(text)


def test_apply_drift_shifts_and_clips_to_the_schema() -> None:
    rng = np.random.default_rng(0)
    shifted = apply_drift(
        RECORD, [parse_drift("age+25"), parse_drift("avg_glucose_level*1.5")], rng
    )
    assert shifted["age"] == 105.0
    assert shifted["avg_glucose_level"] == pytest.approx(158.88)
    clipped = apply_drift(RECORD, [parse_drift("age+60")], rng)
    assert clipped["age"] == 120.0
    assert validate_record(clipped).ok
    assert RECORD["age"] == 80.0  # the input is not modified


def test_apply_drift_share() -> None:
    rng = np.random.default_rng(0)
    spec = [parse_drift("bmi=null@0.3")]
    missing = sum(apply_drift(RECORD, spec, rng)["bmi"] is None for _ in range(2000))
    assert 500 < missing < 700


def test_synthetic_rows_are_valid_records() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        row = synthetic_row(rng)
        features = {k: row[k] for k in FEATURE_NAMES}
        assert validate_record(features).ok, validate_record(features).errors


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("http://127.3.4.5", True),
        ("http://10.0.0.1:8000", False),
        ("https://example.org", False),
        ("http://127.0.0.1.example.org", False),
    ],
)
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_remote_urls_need_an_explicit_flag() -> None:
    parser = build_parser()
    with pytest.raises(ValueError, match="allow-remote"):
        config_from_args(parser.parse_args(["--url", "http://10.1.2.3:8000"]))
    config = config_from_args(
        parser.parse_args(["--url", "http://10.1.2.3:8000", "--allow-remote"])
    )
    assert config.url == "http://10.1.2.3:8000"


def test_config_collects_repeated_and_comma_separated_drift() -> None:
    args = build_parser().parse_args(
        ["--url", "http://127.0.0.1:1", "--drift", "age+25,bmi=null@0.2", "--drift", "gender=Male"]
    )
    assert [d.field for d in config_from_args(args).drift] == ["age", "bmi", "gender"]


@pytest.mark.parametrize(
    "argv",
    [["--requests", "0"], ["--feedback-rate", "1.5"], ["--max-batch-size", "0"]],
)
def test_config_bounds(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        config_from_args(build_parser().parse_args(["--url", "http://127.0.0.1:1", *argv]))


def test_payloads_and_answers() -> None:
    assert predict_payload([RECORD]) == RECORD
    assert predict_payload([RECORD, RECORD]) == {"instances": [RECORD, RECORD]}
    single = parse_predictions(
        {"prediction_id": "a", "stroke_probability": 0.2, "stroke_prediction": True}
    )
    assert single == [ScoredRecord("a", 0.2, True)]
    batch = parse_predictions(
        {"predictions": [{"prediction_id": "a", "stroke_probability": 0.1}, {"prediction_id": "b"}]}
    )
    assert batch == [ScoredRecord("a", 0.1, None), ScoredRecord("b", None, None)]
    assert parse_predictions("nonsense") == []


def test_choose_label() -> None:
    rng = np.random.default_rng(0)
    assert choose_label({"stroke": 1}, ScoredRecord("a", 0.0, False), "truth", rng) == 1
    draws = [
        choose_label({"stroke": None}, ScoredRecord("a", 0.25, False), "truth", rng)
        for _ in range(2000)
    ]
    assert 400 < sum(draws) < 600  # falls back to the probability without a true label
    assert choose_label({}, ScoredRecord("a", None, None), "probability", rng) is None


def test_service_figures_rank_drift_and_pair_label_based_with_estimated() -> None:
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    from monitoring.simulate import format_service_figures, service_figures

    registry = CollectorRegistry()
    psi = Gauge("stroke_feature_psi", "", ["feature"], registry=registry)
    for feature, value in {"bmi": 0.15, "age": 1.9, "gender": 0.02, "work_type": 0.3}.items():
        psi.labels(feature=feature).set(value)
    plain = {
        "stroke_drift_window_records": 400,
        "stroke_multivariate_drift_auc": 0.91,
        "stroke_live_labels": 200,
        "stroke_live_positive_labels": 12,
        "stroke_live_negative_labels": 188,
        "stroke_live_roc_auc": 0.8,
        "stroke_estimated_roc_auc": 0.83,
        "stroke_estimated_recall": 0.7,
    }
    for name, value in plain.items():
        Gauge(name, "", registry=registry).set(value)
    figures = service_figures(generate_latest(registry).decode())
    drift, performance = figures["drift"], figures["performance"]
    assert drift["top_psi"] == [["age", 1.9], ["work_type", 0.3], ["bmi", 0.15]]
    assert drift["significant"] == ["age", "work_type"]
    assert drift["window_records"] == 400 and drift["multivariate_drift_auc"] == 0.91
    assert (performance["labels"], performance["strokes"], performance["non_strokes"]) == (
        200,
        12,
        188,
    )
    assert performance["label_based"] == {"roc_auc": 0.8, "recall": None, "precision": None}
    assert performance["estimated"] == {"roc_auc": 0.83, "recall": 0.7, "precision": None}
    text = format_service_figures(figures)
    assert "age" in text.splitlines()[1] and "significant" in text.splitlines()[1]
    assert "moderate" in text.splitlines()[3]  # bmi, 0.15
    assert "0.800" in text and "0.830" in text and "0.910" in text
