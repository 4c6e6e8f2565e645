"""Stage evaluate: the only stage that reads the test split.

Reads params: evaluate.*, mlflow.*.
Reads: the prepared splits, the model and its metadata, reports/tuning.json and the
out-of-fold predictions (for calibration and decision curves out of fold),
reports/nested_cv.json and reports/instability.json (internal validation, copied into the
metrics and the evaluation).
Writes: reports/metrics.json (flat, stable keys for `dvc metrics`), reports/evaluation.json
(CIs, baselines, calibration, decision curves, subgroups), reports/plots/*.csv (for
`dvc plots`), reports/test_predictions.csv (for paired comparisons between experiments);
then logs the evaluated model revision to MLflow once (run, registered version, alias).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import joblib
import pandas as pd
from sklearn.inspection import permutation_importance

from stroke_risk.cli import StageError, run_stage
from stroke_risk.data.features import cut_bands
from stroke_risk.data.load import file_sha256
from stroke_risk.data.prepared import read_prepared
from stroke_risk.data.schema import FEATURE_NAMES, TARGET
from stroke_risk.evaluation.calibration import (
    CALIBRATION_CI_METHOD,
    calibration_intercept_slope,
    smoothed_calibration_curve,
)
from stroke_risk.evaluation.decision_curve import decision_curve, useful_ranges
from stroke_risk.evaluation.metrics import (
    baseline_metrics,
    calibration_table,
    expected_calibration_error,
    metrics_with_intervals,
    plot_tables,
    rounded,
    subgroup_metrics,
)
from stroke_risk.io import load_params, write_csv, write_json
from stroke_risk.params import EvaluateParams, MlflowParams, read_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train", default="data/prepared/train.csv")
    parser.add_argument("--test", default="data/prepared/test.csv")
    parser.add_argument("--model", default="models/model.joblib")
    parser.add_argument("--metadata", default="models/model_metadata.json")
    parser.add_argument("--tuning", default="reports/tuning.json")
    parser.add_argument("--oof", default="data/oof/oof_predictions.csv")
    parser.add_argument("--predictions", default="reports/test_predictions.csv")
    parser.add_argument("--metrics", default="reports/metrics.json")
    parser.add_argument("--evaluation", default="reports/evaluation.json")
    parser.add_argument("--plots", default="reports/plots")
    parser.add_argument("--data-summary", default="reports/data_summary.json")
    parser.add_argument("--nested-cv", default="reports/nested_cv.json")
    parser.add_argument("--instability", default="reports/instability.json")
    args = parser.parse_args()
    params = load_params(args.params)
    settings = read_section(params, "evaluate", EvaluateParams).model_dump()
    tracking = read_section(params, "mlflow", MlflowParams)
    with open(args.metadata) as handle:
        metadata = json.load(handle)
    with open(args.tuning) as handle:
        tuning = json.load(handle)
    with open(args.nested_cv) as handle:
        nested_cv = json.load(handle)
    with open(args.instability) as handle:
        instability = json.load(handle)
    threshold = float(metadata["decision_threshold"])

    model = joblib.load(args.model)
    train, test = read_prepared(args.train), read_prepared(args.test)
    y_test = test[TARGET].to_numpy()
    features = test[list(FEATURE_NAMES)]
    probability = model.predict_proba(features)[:, 1]

    bootstrap = {"n_resamples": settings["bootstrap_resamples"], "seed": settings["bootstrap_seed"]}
    oof = pd.read_csv(args.oof)
    y_oof, oof_probability = oof[TARGET].to_numpy(), oof["oof_probability"].to_numpy()

    test_metrics = metrics_with_intervals(y_test, probability, threshold, **bootstrap)
    calibration = calibration_table(y_test, probability, n_bins=settings["calibration_bins"])
    test_calibration = calibration_intercept_slope(y_test, probability)
    cv_calibration = calibration_intercept_slope(y_oof, oof_probability)
    test_curve = decision_curve(y_test, probability, **bootstrap)
    cv_curve = decision_curve(y_oof, oof_probability, **bootstrap)
    age_bands = cut_bands(test["age"], tuple(metadata["feature_config"]["age_band_edges"]))
    subgroups = {
        name: subgroup_metrics(y_test, probability, groups, threshold, **bootstrap)
        for name, groups in (
            ("gender", test["gender"].to_numpy()),
            ("age_band", age_bands.to_numpy()),
            ("hypertension", test["hypertension"].to_numpy()),
        )
    }
    importance = permutation_importance(
        model,
        features,
        y_test,
        scoring="roc_auc",
        n_repeats=settings["importance_repeats"],
        random_state=settings["importance_seed"],
    )

    flat_test = {name: entry["value"] for name, entry in test_metrics.items()}
    write_json(
        args.metrics,
        rounded(
            {
                "test": {
                    **flat_test,
                    "threshold": threshold,
                    "n": len(y_test),
                    "positives": int(y_test.sum()),
                    "ece": expected_calibration_error(calibration),
                    **{name: entry["value"] for name, entry in test_calibration.items()},
                },
                "cv": {
                    **{
                        k: tuning["cv"][k]
                        for k in ("roc_auc", "roc_auc_std", "average_precision", "brier")
                    },
                    **{name: entry["value"] for name, entry in cv_calibration.items()},
                    # Nested CV around the whole search: the estimate without the selection
                    # optimism of roc_auc (the best trial scored on the folds that chose it).
                    "roc_auc_nested": nested_cv["nested"]["roc_auc"],
                    "roc_auc_nested_std": nested_cv["nested"]["roc_auc_std"],
                },
                "instability": {"mape": instability["mape"]},
            }
        ),
    )
    write_json(
        args.evaluation,
        rounded(
            {
                "test": test_metrics,
                "baselines": baseline_metrics(train, test, target=TARGET),
                "calibration": {
                    "bins": calibration,
                    "ece": expected_calibration_error(calibration),
                    "test": test_calibration,
                    "cv": cv_calibration,
                    "intercept_slope_ci_method": CALIBRATION_CI_METHOD,
                },
                "decision_curve": {
                    "thresholds": [
                        float(test_curve["threshold"].min()),
                        float(test_curve["threshold"].max()),
                    ],
                    "test": useful_ranges(test_curve),
                    "cv": useful_ranges(cv_curve),
                },
                "bootstrap": {
                    "method": "patient resampling (class counts not fixed), percentile 95% CI",
                    **bootstrap,
                },
                "missing_data": {
                    "rows": int(len(train) + len(test)),
                    "bmi_missing": int(train["bmi"].isna().sum() + test["bmi"].isna().sum()),
                    "smoking_unknown": int(
                        (train["smoking_status"] == "Unknown").sum()
                        + (test["smoking_status"] == "Unknown").sum()
                    ),
                },
                "provenance": {
                    "train_sha256": file_sha256(args.train),
                    "test_sha256": file_sha256(args.test),
                },
                "internal_validation": {
                    "nested_cv": {key: nested_cv[key] for key in ("method", "n_trials", "nested")},
                    "instability": instability,
                },
                "subgroups": subgroups,
                "threshold": {
                    "value": threshold,
                    **metadata["threshold_policy"],
                    "cv_recall": metadata["threshold_cv_metrics"]["recall"],
                    "cv_specificity": metadata["threshold_cv_metrics"]["specificity"],
                    "cv_precision": metadata["threshold_cv_metrics"]["precision"],
                },
            }
        ),
    )
    tables = plot_tables(
        y_test,
        probability,
        threshold,
        calibration=calibration,
        importance=dict(zip(FEATURE_NAMES, importance.importances_mean, strict=True)),
    )
    tables["calibration_smooth"] = smoothed_calibration_curve(y_test, probability, **bootstrap)
    tables["calibration_smooth_cv"] = smoothed_calibration_curve(
        y_oof, oof_probability, **bootstrap
    )
    tables["decision_curve"] = test_curve.assign(
        model_cv=cv_curve["model"], treat_all_cv=cv_curve["treat_all"]
    )
    # Reference lines `dvc plots` draws next to the curves (dvc.yaml `plots:`).
    tables["roc"] = tables["roc"].assign(chance=tables["roc"]["fpr"])
    tables["calibration"] = tables["calibration"].assign(
        perfect=tables["calibration"]["mean_predicted"]
    )
    for name in ("calibration_smooth", "calibration_smooth_cv"):
        tables[name] = tables[name].assign(perfect=tables[name]["predicted"])
    for name, table in tables.items():
        write_csv(f"{args.plots}/{name}.csv", table.round(6))
    write_csv(
        args.predictions,
        pd.DataFrame({TARGET: y_test, "probability": probability}).round(8),
    )

    from stroke_risk.tracking.mlflow_runs import RevisionFiles, log_model_revision, tracking_uri

    files = RevisionFiles(
        model=Path(args.model),
        metadata=Path(args.metadata),
        tuning=Path(args.tuning),
        metrics=Path(args.metrics),
        evaluation=Path(args.evaluation),
        data_summary=Path(args.data_summary),
    )
    try:
        logged = log_model_revision(files, **tracking.model_dump())
    except Exception as error:  # store unreachable, bad credentials: one line, no traceback
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)
        raise StageError(
            f"MLflow logging failed ({reason}); check MLFLOW_TRACKING_URI "
            f"or unset it to use the repository's mlflow.db"
        ) from None
    print(
        f"MLflow ({tracking_uri().split('@')[-1]}): run {logged.run_id}, "
        f"{tracking.registered_model} version {logged.version} is @{tracking.alias}"
    )


if __name__ == "__main__":
    run_stage("evaluate", main)
