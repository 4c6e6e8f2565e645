"""The scrape-time collector, live performance, settings and the scoring callback."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest
from sklearn.metrics import roc_auc_score

from app.live_metrics_exporter import LiveMetricsCollector
from app.monitoring import MONITOR_KEY, install_monitoring
from app.settings import Settings
from stroke_risk.data.schema import FEATURES, NumericField
from stroke_risk.monitoring.drift import compute_drift
from stroke_risk.monitoring.live import check_reference_profile, live_performance
from stroke_risk.monitoring.prediction_log import LabelledPrediction, PredictionLog, Window

SETTINGS = Settings(
    monitor_drift_window_records=500,
    monitor_drift_window_seconds=None,
    monitor_min_drift_records=20,
    monitor_min_labels=10,
    monitor_min_positive_labels=1,
    monitor_min_negative_labels=1,
    monitor_cache_seconds=0.0,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def labelled(pairs: list[tuple[float, int]]) -> list[LabelledPrediction]:
    return [LabelledPrediction(str(i), p, p >= 0.5, y) for i, (p, y) in enumerate(pairs)]


def make_app(tmp_path: Path, profile: dict[str, Any], **kwargs: Any) -> tuple[Flask, Any, Any]:
    """Return (app, its prediction-log writer, its registry) with live monitoring installed."""
    app = Flask("test-monitoring")
    registry = CollectorRegistry()
    settings = kwargs.pop("settings", SETTINGS).replace(monitor_db_path=tmp_path / "log.sqlite")
    monitoring = install_monitoring(
        app,
        settings=settings,
        reference_profile=profile,
        decision_threshold=0.05,
        model_version=kwargs.pop("model_version", "v1"),
        registry=registry,
        **kwargs,
    )
    return app, monitoring.writer, registry


def performance(data: list[LabelledPrediction], threshold: float) -> Any:
    return live_performance([p.probability for p in data], [p.label for p in data], threshold)


def score(monitor: Any, records: list[dict[str, Any]], start: int = 0) -> list[str]:
    """Record records with a deterministic fake probability (age/100); return their ids."""
    ids = [f"p{start + i}" for i in range(len(records))]
    probabilities = [min(r["age"] / 100.0, 1.0) for r in records]
    assert monitor.on_predictions(
        records, probabilities, [p >= 0.05 for p in probabilities], ids, "v1"
    )
    return ids


# --- live performance ------------------------------------------------------------------


def test_live_roc_auc_matches_sklearn_including_ties() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300).tolist()
    scores = rng.choice([0.1, 0.2, 0.3, 0.5, 0.9], 300).tolist()  # many ties
    result = live_performance(scores, labels, 0.5)
    assert result is not None
    assert result.roc_auc == pytest.approx(roc_auc_score(labels, scores))


def test_live_performance_by_hand() -> None:
    # threshold 0.5: predicted positive = 0.9, 0.6, 0.7; true positives 0.9, 0.6.
    data = labelled([(0.9, 1), (0.6, 1), (0.2, 1), (0.7, 0), (0.1, 0)])
    result = performance(data, 0.5)
    assert result is not None
    assert result.recall == pytest.approx(2 / 3)
    assert result.precision == pytest.approx(2 / 3)
    assert result.brier == pytest.approx((0.01 + 0.16 + 0.64 + 0.49 + 0.01) / 5)
    assert result.roc_auc == pytest.approx(4 / 6)


def test_live_performance_needs_both_classes_and_handles_no_positive_call() -> None:
    assert performance(labelled([(0.9, 1), (0.8, 1)]), 0.5) is None
    result = performance(labelled([(0.1, 1), (0.2, 0)]), 0.5)
    assert result is not None and result.precision is None and result.recall == 0.0


# --- collector -------------------------------------------------------------------------


def test_small_window_exports_only_its_size(tmp_path: Path, reference_profile: dict) -> None:
    _, monitor, registry = make_app(tmp_path, reference_profile)
    assert registry.get_sample_value("stroke_drift_window_records") == 0
    assert registry.get_sample_value("stroke_drift_score") is None
    assert registry.get_sample_value("stroke_live_labels") == 0


def test_drift_gauges_follow_the_shared_window(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    app, monitor, registry = make_app(tmp_path, reference_profile)
    drifted = [dict(r, age=min(r["age"] + 25, 120.0)) for r in training_records[:300]]
    score(monitor, drifted)
    value = registry.get_sample_value
    assert value("stroke_drift_window_records") == 300
    assert value("stroke_feature_psi", {"feature": "age"}) > 0.2
    assert value("stroke_feature_psi", {"feature": "gender"}) < 0.1
    assert value("stroke_feature_drift_pvalue", {"feature": "age", "test": "ks"}) < 1e-6
    assert value("stroke_feature_drift_pvalue", {"feature": "gender", "test": "chi2"}) > 0.001
    assert value("stroke_feature_missing_rate", {"feature": "bmi"}) == 0.0
    assert value("stroke_feature_unseen_category_rate", {"feature": "work_type"}) == 0.0
    assert value("stroke_feature_unseen_category_rate", {"feature": "age"}) is None
    assert value("stroke_drift_score") == value("stroke_feature_psi", {"feature": "age"})
    text = generate_latest(registry).decode()
    # Every schema field for PSI and p-value; the categorical and binary ones for unseen
    # categories.
    assert text.count("stroke_feature_psi{") == len(FEATURES)
    assert text.count("stroke_feature_drift_pvalue{") == len(FEATURES)
    assert text.count("stroke_feature_unseen_category_rate{") == sum(
        not isinstance(spec, NumericField) for spec in FEATURES
    )


def test_missing_bmi_is_reported(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    _, monitor, registry = make_app(tmp_path, reference_profile)
    records = [
        dict(r, bmi=None if i % 2 else r["bmi"]) for i, r in enumerate(training_records[:100])
    ]
    score(monitor, records)
    assert registry.get_sample_value("stroke_feature_missing_rate", {"feature": "bmi"}) == 0.5


def test_two_workers_report_the_same_window(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    # Two apps on one log file stand in for two gunicorn workers.
    _, worker_a, registry_a = make_app(tmp_path, reference_profile)
    _, worker_b, registry_b = make_app(tmp_path, reference_profile)
    score(worker_a, training_records[:40])
    score(worker_b, training_records[40:100], start=40)
    for registry in (registry_a, registry_b):
        assert registry.get_sample_value("stroke_drift_window_records") == 100
    assert registry_a.get_sample_value("stroke_drift_score") == registry_b.get_sample_value(
        "stroke_drift_score"
    )


def test_live_performance_appears_at_the_minimum_label_count(
    tmp_path: Path, reference_profile: dict, training_frame: Any
) -> None:
    app, monitor, registry = make_app(tmp_path, reference_profile)
    strokes = training_frame[training_frame["stroke"] == 1].head(5)
    healthy = training_frame[training_frame["stroke"] == 0].head(25)
    rows = pd.concat([strokes, healthy])
    records = rows.drop(columns="stroke").to_dict("records")
    ids = score(monitor, records)
    labels = rows["stroke"].tolist()
    client = app.test_client()
    # Nine labels of both classes: one short of the minimum.
    first = [1, *range(22, 30)]
    for i in first:
        response = client.post("/feedback", json={"prediction_id": ids[i], "stroke": labels[i]})
        assert response.status_code == 201
    assert registry.get_sample_value("stroke_live_labels") == 9
    assert registry.get_sample_value("stroke_live_roc_auc") is None
    response = client.post("/feedback", json={"prediction_id": ids[0], "stroke": labels[0]})
    assert response.status_code == 201
    assert registry.get_sample_value("stroke_live_labels") == 10
    probabilities = [min(r["age"] / 100, 1.0) for r in records]
    used = [0, *first]
    expected = roc_auc_score([labels[i] for i in used], [probabilities[i] for i in used])
    assert registry.get_sample_value("stroke_live_roc_auc") == pytest.approx(expected)
    for name in ("stroke_live_recall", "stroke_live_precision", "stroke_live_brier"):
        assert registry.get_sample_value(name) is not None


def test_one_class_of_labels_exports_no_performance(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    app, monitor, registry = make_app(tmp_path, reference_profile)
    ids = score(monitor, training_records[:12])
    for pid in ids:
        app.test_client().post("/feedback", json={"prediction_id": pid, "stroke": 0})
    assert registry.get_sample_value("stroke_live_labels") == 12
    assert registry.get_sample_value("stroke_live_roc_auc") is None


def test_collector_caches_for_cache_seconds(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    store = PredictionLog(tmp_path / "log.sqlite")
    clock = FakeClock()
    settings = Settings(monitor_min_drift_records=1, monitor_cache_seconds=2.0)
    collector = LiveMetricsCollector(
        store,
        reference_profile,
        decision_threshold=0.05,
        model_version="v1",
        settings=settings,
        clock=clock,
    )
    registry = CollectorRegistry()
    registry.register(collector)
    _, monitor, _ = make_app(tmp_path, reference_profile)
    score(monitor, training_records[:5])
    assert registry.get_sample_value("stroke_drift_window_records") == 5
    score(monitor, training_records[5:8], start=5)
    clock.now = 1.0
    assert registry.get_sample_value("stroke_drift_window_records") == 5  # cached
    clock.now = 2.5
    assert registry.get_sample_value("stroke_drift_window_records") == 8


def test_store_failure_does_not_break_the_scrape(
    tmp_path: Path, reference_profile: dict, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    _, monitor, registry = make_app(tmp_path, reference_profile)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(monitor.store, "recent_features", broken)
    text = generate_latest(registry).decode()
    assert "stroke_feedback_total" in text
    assert "stroke_drift_window_records" not in text
    assert "cannot read the prediction log" in caplog.text


# --- scoring callback ------------------------------------------------------------------


def test_on_predictions_failure_is_logged_without_feature_values(
    tmp_path: Path, reference_profile: dict, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    _, monitor, _ = make_app(tmp_path, reference_profile)
    record = {"age": 71.25, "avg_glucose_level": 199.37, "smoking_status": "smokes"}

    def locked(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(monitor.store, "record_predictions", locked)
    with caplog.at_level(logging.DEBUG):
        assert monitor([record], [0.3], [True], ["x"], "v1") is False
    assert "not recorded" in caplog.text
    for secret in ("71.25", "199.37", "smokes"):
        assert secret not in caplog.text


def test_on_predictions_refuses_misaligned_lists(tmp_path: Path, reference_profile: dict) -> None:
    _, monitor, _ = make_app(tmp_path, reference_profile)
    with pytest.raises(ValueError, match="length"):
        monitor.on_predictions([{}], [0.1, 0.2], [True], ["a"], "v1")


def test_on_predictions_stores_only_schema_fields(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    _, monitor, _ = make_app(tmp_path, reference_profile)
    record = dict(training_records[0], note="free text")
    score(monitor, [record])
    stored = monitor.store.recent_features(Window())[0]
    assert "note" not in stored and stored["age"] == record["age"]


def test_install_registers_metrics_and_mounts_feedback(
    tmp_path: Path, reference_profile: dict
) -> None:
    app, monitor, registry = make_app(tmp_path, reference_profile)
    assert app.extensions[MONITOR_KEY].writer is monitor
    assert registry.get_sample_value("stroke_feedback_total", {"outcome": "accepted"}) == 0
    assert registry.get_sample_value("stroke_feedback_total", {"outcome": "rejected"}) == 0
    assert any(rule.rule == "/feedback" for rule in app.url_map.iter_rules())


def test_profile_check_names_the_missing_feature(reference_profile: dict) -> None:
    broken = {**reference_profile, "features": {"age": reference_profile["features"]["age"]}}
    with pytest.raises(ValueError, match="'gender' is missing"):
        check_reference_profile(broken)


def test_callback_with_the_apps_four_arguments_stores_the_install_version(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    # The app calls PREDICTION_CALLBACKS with (records, probabilities, decisions, ids).
    _, monitor, _ = make_app(tmp_path, reference_profile, model_version="md5-abc")
    assert monitor(training_records[:2], [0.1, 0.2], [True, True], ["a", "b"]) is True
    monitor.on_predictions(training_records[2:3], [0.3], [True], ["c"], "override")
    with sqlite3.connect(tmp_path / "log.sqlite") as connection:
        versions = dict(connection.execute("SELECT prediction_id, model_version FROM predictions"))
    assert versions == {"a": "md5-abc", "b": "md5-abc", "c": "override"}


def test_multiprocess_mode_leaves_the_counter_to_the_files(
    tmp_path: Path, reference_profile: dict
) -> None:
    _, _, registry = make_app(tmp_path, reference_profile, multiprocess=True)
    assert registry.get_sample_value("stroke_feedback_total", {"outcome": "accepted"}) is None
    assert registry.get_sample_value("stroke_drift_window_records") == 0


def test_pipeline_reference_profile_fits_the_drift_code(training_records: list[dict]) -> None:
    # The artifact of the DVC featurize stage, when it has been built.
    path = Path(__file__).resolve().parents[2] / "models" / "reference_profile.json"
    if not path.is_file():
        pytest.skip("models/reference_profile.json not built (run dvc repro)")
    import json

    from stroke_risk.monitoring.drift import compute_drift

    profile = json.loads(path.read_text())
    check_reference_profile(profile)
    report = compute_drift(profile, training_records[:1000])
    assert report.drift_score is not None and report.drift_score < 0.1


# --- second edition: per-version figures, label minimums, label-free figures -------------


def test_live_figures_count_only_the_current_model_version(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    """After a redeploy the old model's rows (and labels) do not enter the new figures."""
    old_app, old_monitor, _ = make_app(tmp_path, reference_profile, model_version="old")
    drifted = [dict(r, age=min(r["age"] + 30, 120.0)) for r in training_records[:200]]
    old_ids = [f"old{i}" for i in range(200)]
    assert old_monitor(drifted, [0.9] * 200, [True] * 200, old_ids)
    client = old_app.test_client()
    for i in range(0, 200, 2):
        client.post("/feedback", json={"prediction_id": old_ids[i], "stroke": i % 4 == 0})
    _, new_monitor, registry = make_app(tmp_path, reference_profile, model_version="new")
    score_ids = [f"new{i}" for i in range(30)]
    assert new_monitor(training_records[200:230], [0.1] * 30, [False] * 30, score_ids)
    assert registry.get_sample_value("stroke_drift_window_records") == 30
    assert registry.get_sample_value("stroke_live_labels") == 0
    assert registry.get_sample_value("stroke_live_roc_auc") is None
    # The drift score is that of the new version's 30 records alone.
    alone = compute_drift(reference_profile, training_records[200:230]).drift_score
    assert registry.get_sample_value("stroke_drift_score") == pytest.approx(alone)


def test_live_performance_needs_enough_labels_of_each_class(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    """50 labels with 2 positives (5 % prevalence) are not enough for recall or ROC-AUC."""
    settings = SETTINGS.replace(
        monitor_min_labels=50, monitor_min_positive_labels=10, monitor_min_negative_labels=10
    )
    app, monitor, registry = make_app(tmp_path, reference_profile, settings=settings)
    ids = score(monitor, training_records[:80])
    client = app.test_client()
    for i, pid in enumerate(ids[:50]):
        client.post("/feedback", json={"prediction_id": pid, "stroke": int(i < 2)})
    value = registry.get_sample_value
    assert (value("stroke_live_labels"), value("stroke_live_positive_labels")) == (50, 2)
    assert value("stroke_live_negative_labels") == 48
    assert value("stroke_live_roc_auc") is None and value("stroke_live_recall") is None
    for i, pid in enumerate(ids[50:80]):
        client.post("/feedback", json={"prediction_id": pid, "stroke": int(i < 8)})
    assert value("stroke_live_positive_labels") == 10
    assert value("stroke_live_roc_auc") is not None and value("stroke_live_recall") is not None


def test_estimated_performance_tracks_the_labelled_figures_when_calibrated() -> None:
    from stroke_risk.monitoring.live import estimated_performance

    rng = np.random.default_rng(7)
    probabilities = rng.beta(0.6, 9.0, 20_000)  # ~6 % prevalence, calibrated by construction
    labels = (rng.random(20_000) < probabilities).astype(int)
    actual = live_performance(probabilities, labels, 0.1)
    estimate = estimated_performance(probabilities, 0.1)
    assert actual is not None and estimate.roc_auc is not None
    assert estimate.roc_auc == pytest.approx(actual.roc_auc, abs=0.015)
    assert estimate.recall == pytest.approx(actual.recall, abs=0.02)
    assert estimate.precision == pytest.approx(actual.precision, abs=0.02)
    # Exact on a small case by hand: pairs (0.8 over 0.2) -> 0.8*0.8, (0.2 over 0.8) -> 0.
    tiny = estimated_performance([0.2, 0.8], 0.5)
    assert tiny.roc_auc == pytest.approx(0.64 / (0.64 + 0.04))
    assert tiny.recall == pytest.approx(0.8 / 1.0) and tiny.precision == pytest.approx(0.8)


def test_estimated_performance_is_exported(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    _, monitor, registry = make_app(tmp_path, reference_profile)
    score(monitor, training_records[:100])
    for name in ("stroke_estimated_roc_auc", "stroke_estimated_recall"):
        assert 0.0 <= registry.get_sample_value(name) <= 1.0


def swapped_age_glucose(records: list[dict]) -> list[dict]:
    """The same ages and the same glucose values, with the glucose order reversed by age."""
    by_age = sorted(range(len(records)), key=lambda i: records[i]["age"])
    glucose = sorted(r["avg_glucose_level"] for r in records)
    out = [dict(r) for r in records]
    for rank, index in enumerate(by_age):
        out[index]["avg_glucose_level"] = glucose[-1 - rank]
    return out


def test_multivariate_drift_catches_a_swapped_relationship_psi_misses(
    reference_profile: dict, training_records: list[dict]
) -> None:
    from stroke_risk.monitoring.live import classifier_drift_auc

    # A reference where glucose rises with age, and a live window where it falls: every
    # field's own distribution is identical, so per-field PSI cannot see the change.
    rng = np.random.default_rng(3)
    rows = [dict(r) for r in training_records[:1200]]
    by_age = sorted(range(len(rows)), key=lambda i: rows[i]["age"])
    glucose = sorted(r["avg_glucose_level"] for r in rows)
    for rank, index in enumerate(by_age):
        rows[index]["avg_glucose_level"] = glucose[rank]
    order = rng.permutation(len(rows))
    reference = [rows[i] for i in order[:600]]
    same = [rows[i] for i in order[600:]]
    swapped = swapped_age_glucose(same)
    same_drift = compute_drift(reference_profile, same)
    swapped_drift = compute_drift(reference_profile, swapped)
    for name in ("age", "avg_glucose_level"):
        assert swapped_drift.features[name].psi == pytest.approx(same_drift.features[name].psi)
    assert classifier_drift_auc(reference, same) < 0.6
    assert classifier_drift_auc(reference, swapped) > 0.8


def test_reference_profile_keeps_a_seeded_joint_sample_of_valid_records(
    training_frame: pd.DataFrame, reference_profile: dict
) -> None:
    from stroke_risk.data.features import JOINT_SAMPLE_SIZE, build_reference_profile
    from stroke_risk.data.schema import FEATURE_NAMES, validate_record

    sample = reference_profile["joint_sample"]
    assert len(sample) == JOINT_SAMPLE_SIZE <= 500
    assert all(list(row) == list(FEATURE_NAMES) for row in sample)
    assert all(validate_record(row).ok for row in sample)
    assert len({tuple(row.values()) for row in sample}) > 0.95 * len(sample)  # no repeats
    again = build_reference_profile(training_frame, target="stroke", seed=0)
    other_seed = build_reference_profile(training_frame, target="stroke", seed=1)
    assert again["joint_sample"] == sample and other_seed["joint_sample"] != sample
    assert "joint_sample" not in build_reference_profile(
        training_frame, target="stroke", seed=0, joint_sample_size=0
    )


def test_multivariate_drift_auc_is_exported_from_the_profiles_joint_sample(
    tmp_path: Path, reference_profile: dict, training_records: list[dict]
) -> None:
    rng = np.random.default_rng(5)
    same = [training_records[int(i)] for i in rng.choice(len(training_records), 300)]
    older = [{**record, "age": min(record["age"] + 25, 120)} for record in same]

    def exported_auc(directory: Path, profile: dict, records: list[dict]) -> float | None:
        app, monitor, registry = make_app(directory, profile)
        score(monitor, records)
        # The first scrape starts the fit in a thread and exports nothing yet.
        assert registry.get_sample_value("stroke_multivariate_drift_auc") is None
        job = app.extensions[MONITOR_KEY].collector._multivariate_job
        if job is not None:
            job.wait(timeout=60)
        return registry.get_sample_value("stroke_multivariate_drift_auc")

    calm = exported_auc(tmp_path / "same", reference_profile, same)
    shifted = exported_auc(tmp_path / "older", reference_profile, older)
    assert calm is not None and calm < 0.65
    assert shifted is not None and shifted > 0.8
    # A profile without the sample exports no classifier AUC (and starts no fit).
    bare = {key: value for key, value in reference_profile.items() if key != "joint_sample"}
    assert exported_auc(tmp_path / "bare", bare, same) is None


GEVENT_SCRIPT = """
from gevent import monkey

monkey.patch_all()
import json, sys, time
from pathlib import Path

import gevent
import sklearn.ensemble  # imported by the preloaded app in a real worker

from app.live_metrics_exporter import LiveMetricsCollector
from app.settings import Settings
from stroke_risk.monitoring.prediction_log import PredictionLog

profile = json.loads(Path(sys.argv[1]).read_text())
live = [dict(r, age=min(r["age"] + 25, 120)) for r in profile["joint_sample"] * 20]
collector = LiveMetricsCollector(
    PredictionLog(Path(sys.argv[2])), profile, decision_threshold=0.1, model_version="v1",
    settings=Settings(),
)
started = time.perf_counter()
collector._multivariate_auc(live)  # starts the fit (10,000 live rows: ~0.5 s here)
last = time.perf_counter()
gaps = [last - started]  # starting it must not wait for it either
while collector._multivariate_value is None:
    gevent.sleep(0.01)  # the worker's event loop: it must keep turning during the fit
    now = time.perf_counter()
    gaps.append(now - last)
    last = now
    assert now - started < 60, "no fit within a minute"
print(json.dumps({"max_gap": max(gaps), "ticks": len(gaps), "auc": collector._multivariate_value}))
"""


@pytest.mark.integration
def test_drift_classifier_fit_leaves_a_gevent_workers_loop_running(
    tmp_path: Path, reference_profile: dict
) -> None:
    """Under gevent, threading.Thread is a greenlet: the fit must run in an OS thread
    (gevent's thread pool), so the worker's event loop keeps serving requests."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("gevent")
    profile_path = tmp_path / "profile.json"
    profile_path.write_text(json.dumps(reference_profile))
    result = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, str(profile_path), str(tmp_path / "log.sqlite")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # as app/gunicorn_conf.py sets it
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["auc"] > 0.8  # older by 25 years: the classifier tells them apart
    assert outcome["ticks"] >= 5 and outcome["max_gap"] < 0.25, outcome


def test_profile_correlations_are_the_live_statistic_on_all_training_rows(
    reference_profile: dict, training_frame: Any, training_records: list[dict]
) -> None:
    from scipy import stats

    from stroke_risk.data.features import CORRELATION_PAIRS
    from stroke_risk.monitoring.drift import rank_correlation

    stored = reference_profile["correlations"]
    assert sorted(stored) == sorted(f"{a}:{b}" for a, b in CORRELATION_PAIRS)
    for first, second in CORRELATION_PAIRS:
        both = training_frame[[first, second]].astype(float).dropna()
        expected = stats.spearmanr(both[first], both[second]).statistic
        entry = stored[f"{first}:{second}"]
        assert entry["rows"] == len(both)
        assert entry["spearman"] == pytest.approx(expected, abs=1e-6)
        # The live side (rank_correlation over records) gives the same figure.
        live = rank_correlation(
            np.array([r[first] if r[first] is not None else np.nan for r in training_records]),
            np.array([r[second] if r[second] is not None else np.nan for r in training_records]),
        )
        assert live is not None and live.rho == pytest.approx(expected, abs=1e-6)


def test_correlation_drift_sees_a_broken_age_glucose_relationship(
    reference_profile: dict, training_records: list[dict]
) -> None:
    from stroke_risk.monitoring.live import correlation_drift

    rng = np.random.default_rng(5)
    chosen = rng.choice(len(training_records), size=1000, replace=False)
    window = [dict(training_records[i]) for i in chosen]
    same = {d.pair: d.pvalue for d in correlation_drift(reference_profile["correlations"], window)}
    glucose = rng.permutation([r["avg_glucose_level"] for r in window])
    for record, value in zip(window, glucose, strict=True):
        record["avg_glucose_level"] = float(value)
    broken = {
        d.pair: d.pvalue for d in correlation_drift(reference_profile["correlations"], window)
    }
    assert min(same.values()) > 0.01
    # The rule's level (StrokeFeatureCorrelationDrift: < 0.0003) on 1,000 records.
    assert broken["age:avg_glucose_level"] < 0.0003
    assert broken["age:bmi"] > 0.01  # untouched pair
