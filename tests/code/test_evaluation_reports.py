"""The stages' report builders against the committed reports they wrote (shapes, not values)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from stroke_risk import paths
from stroke_risk.cli import StageError
from stroke_risk.data.features import FeatureConfig, cut_bands
from stroke_risk.data.load import (
    data_summary,
    drop_exact_duplicates,
    load_dataset,
    stratified_split,
)
from stroke_risk.data.schema import TARGET
from stroke_risk.evaluation.instability import instability_report
from stroke_risk.models.metadata import choose_threshold, model_metadata
from stroke_risk.models.tuned_model import TunedModel, tuned_model
from stroke_risk.params import EvaluateParams, MlflowParams, ThresholdParams
from stroke_risk.ports import free_port
from stroke_risk.reports import evaluation_reports
from stroke_risk.reports.evaluation_reports import (
    evaluate_on_test,
    evaluation_plot_tables,
    evaluation_report,
    metrics_report,
    predictions_table,
    subgroup_labels,
)
from stroke_risk.tracking.mlflow_runs import RevisionFiles, log_evaluated_revision
from tests.conftest import REPO_ROOT

SETTINGS = EvaluateParams(
    bootstrap_resamples=20,
    bootstrap_seed=0,
    calibration_bins=5,
    importance_repeats=1,
    importance_seed=0,
)
POLICY = ThresholdParams(policy="min_recall", target_recall=0.8, harm_benefit_ratio=0.05)


def committed(path: str):
    return json.loads((REPO_ROOT / path).read_text())


def key_tree(document):
    """The nested keys of a JSON document (leaves as None), to compare shapes, not values."""
    if isinstance(document, dict):
        return {key: key_tree(value) for key, value in document.items()}
    return None


@pytest.fixture(scope="module")
def evaluated(brain_frame):
    """A small raw-field model evaluated on a held-out part of brain.csv."""
    shuffled = brain_frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, test = shuffled.iloc[:3000], shuffled.iloc[3000:].reset_index(drop=True)
    model = make_pipeline(
        ColumnTransformer(
            [("numeric", "passthrough", ["age", "hypertension", "avg_glucose_level"])]
        ),
        LogisticRegression(max_iter=500),
    ).fit(train, train[TARGET])
    oof = pd.DataFrame({TARGET: train[TARGET], "oof_probability": model.predict_proba(train)[:, 1]})
    threshold = choose_threshold(oof[TARGET].to_numpy(), oof["oof_probability"].to_numpy(), POLICY)
    metadata = {
        "decision_threshold": threshold.value,
        "feature_config": {"age_band_edges": [18.0, 40.0, 60.0, 80.0]},
        "threshold_policy": POLICY.model_dump(),
        "threshold_cv_metrics": threshold.cv_metrics,
    }
    result = evaluate_on_test(model, test, oof, metadata=metadata, settings=SETTINGS)
    return result, train, test, metadata


def test_metrics_report_has_the_shape_of_the_committed_metrics(evaluated):
    result, *_ = evaluated
    report = metrics_report(
        result,
        tuning=committed(paths.TUNING_REPORT),
        nested_cv=committed(paths.NESTED_CV_REPORT),
        instability=committed(paths.INSTABILITY_SUMMARY),
    )
    assert key_tree(report) == key_tree(committed(paths.METRICS))
    assert report["test"]["n"] == len(result.y_test)
    assert report["test"]["threshold"] == round(result.threshold, 6)


def test_evaluation_report_has_the_shape_of_the_committed_evaluation(evaluated):
    result, train, test, metadata = evaluated
    report = evaluation_report(
        result,
        train=train,
        test=test,
        metadata=metadata,
        nested_cv=committed(paths.NESTED_CV_REPORT),
        instability=committed(paths.INSTABILITY_SUMMARY),
        provenance={"train_sha256": "a", "test_sha256": "b"},
    )
    expected = committed(paths.EVALUATION)
    assert set(report) == set(expected)
    for section in ("test", "calibration", "bootstrap", "missing_data", "threshold", "subgroups"):
        assert set(report[section]) == set(expected[section]), section
    assert report["missing_data"]["rows"] == len(train) + len(test)
    assert report["threshold"]["policy"] == "min_recall"


def test_plot_tables_are_the_committed_files_with_their_columns(evaluated):
    result, *_ = evaluated
    tables = evaluation_plot_tables(result)
    assert set(tables) == set(paths.PLOT_TABLES)
    for name, table in tables.items():
        header = (REPO_ROOT / paths.plot_table(name)).read_text().splitlines()[0]
        assert ",".join(table.columns) == header, name
    assert list(predictions_table(result).columns) == [TARGET, "probability"]


def test_subgroups_are_the_schema_fields_numeric_ones_in_bands(brain_frame, monkeypatch):
    config = {"age_band_edges": [18.0, 40.0, 60.0, 80.0], "bmi_band_edges": [18.5, 25.0, 30.0]}
    default = subgroup_labels(brain_frame, config)
    assert set(default) == {"gender", "age_band", "hypertension"}
    monkeypatch.setattr(evaluation_reports, "SUBGROUP_FIELDS", ("smoking_status", "bmi"))
    labels = subgroup_labels(brain_frame, config)
    assert set(labels) == {"smoking_status", "bmi_band"}
    expected = cut_bands(brain_frame["bmi"], (18.5, 25.0, 30.0)).to_numpy()
    assert (labels["bmi_band"] == expected).all()


def test_model_metadata_has_the_keys_of_the_committed_metadata():
    tuning = committed(paths.TUNING_REPORT)
    model = TunedModel(tuning["family"], tuning["best_params"], FeatureConfig(), seed=0)
    y = np.array([0, 0, 1, 0, 1, 1, 0, 0])
    threshold = choose_threshold(y, np.linspace(0.1, 0.8, len(y)), POLICY)
    metadata = model_metadata(
        model, tuning=tuning, threshold=threshold, y_train=y, training_data_sha256="x"
    )
    assert set(metadata) == set(committed(paths.MODEL_METADATA))
    assert metadata["training_rows"] == len(y) and metadata["training_prevalence"] == 0.375
    assert threshold.cv_metrics["recall"] >= POLICY.target_recall


def test_tuned_model_refuses_a_report_of_another_family():
    params = {
        "model": {"family": "xgboost"},
        "train": {"seed": 1},
        "featurize": {
            "age_band_edges": [18, 40],
            "bmi_category_edges": [25],
            "high_glucose_cut": 150,
            "profile_seed": 0,
        },
    }
    with pytest.raises(ValueError, match="tuning.json was tuned for logreg, not xgboost"):
        tuned_model(params, {"family": "logreg", "best_params": {}}, tuning_path="tuning.json")
    spec = tuned_model(params, {"family": "xgboost", "best_params": {"a": 1}}, tuning_path="t")
    assert spec.seed == 1 and spec.feature_config.age_band_edges == (18.0, 40.0)


def test_unreachable_tracking_server_stops_evaluate_with_one_line(monkeypatch):
    """Nothing listens on the port: the stage error names the cause and the fix, no traceback."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    settings = MlflowParams(experiment="e", registered_model="m", alias="candidate")
    with pytest.raises(StageError) as stopped:
        log_evaluated_revision(RevisionFiles().under(REPO_ROOT), settings)
    message = str(stopped.value)
    assert message.startswith("MLflow logging failed (") and "\n" not in message
    assert message.endswith(
        "check MLFLOW_TRACKING_URI or unset it to use the repository's mlflow.db"
    )


def test_data_summary_counts_what_prepare_kept_and_split(tmp_path, brain_raw_text):
    raw = tmp_path / "raw.csv"
    lines = brain_raw_text.splitlines()
    raw.write_text("\n".join([*lines, lines[1], lines[2]]) + "\n")  # two exact duplicates
    dataset = load_dataset(raw)
    deduplicated = drop_exact_duplicates(dataset)
    split = stratified_split(deduplicated, test_size=0.25, seed=0)
    summary = data_summary(raw, dataset, deduplicated, split)
    assert set(summary) == set(committed(paths.DATA_SUMMARY))
    assert summary["duplicates_dropped"] == 2
    assert summary["n_train"] + summary["n_test"] == summary["n_rows"] == len(lines) - 1
    assert summary["n_positive_train"] + summary["n_positive_test"] == summary["n_positive"]


def test_instability_report_has_the_keys_of_the_committed_report():
    rng = np.random.default_rng(0)
    original = rng.random(30)
    bootstrap = np.clip(original + rng.normal(0, 0.05, (12, 30)), 0, 1)
    report = instability_report(original, bootstrap, seed=3)
    assert set(report) == set(committed(paths.INSTABILITY_SUMMARY))
    assert (report["n_bootstrap"], report["patients"], report["seed"]) == (12, 30, 3)
    assert 0 < report["mape"] < 0.1
