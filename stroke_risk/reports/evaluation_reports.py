"""The evaluate stage's outputs as typed builders (metrics.json, evaluation.json, plot tables).

The contracts are documented in docs/CONTRACTS.md, "Evaluation reports".

`evaluate_on_test` computes every statistic once from the held-out test split and the
out-of-fold predictions; `metrics_report`, `evaluation_report` and `evaluation_plot_tables`
only arrange them into the documented shapes, so each contract is defined here and nowhere
else (the report stage, release gates, the clinician page and `dvc metrics` read them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from stroke_risk.data.features import cut_bands
from stroke_risk.data.schema import (
    FEATURE_NAMES,
    FEATURES_BY_NAME,
    SUBGROUP_FIELDS,
    TARGET,
    NumericField,
)
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
from stroke_risk.params import EvaluateParams

BOOTSTRAP_METHOD = "patient resampling (class counts not fixed), percentile 95% CI"
# The tune stage's CV summary keys repeated in metrics.json `cv`.
CV_SUMMARY_KEYS = ("roc_auc", "roc_auc_std", "average_precision", "brier")
# The cross-validated metrics at the threshold repeated in evaluation.json `threshold`.
THRESHOLD_CV_KEYS = ("recall", "specificity", "precision")


@dataclass(frozen=True)
class HeldOutEvaluation:
    """Every statistic evaluate reports, computed once (the builders below arrange them)."""

    threshold: float
    y_test: np.ndarray
    probability: np.ndarray
    y_oof: np.ndarray
    oof_probability: np.ndarray
    bootstrap: dict[str, Any]  # n_resamples, seed: the keyword arguments of every bootstrap
    test_metrics: dict[str, dict[str, Any]]
    calibration_bins: list[dict[str, float]]
    test_calibration: dict[str, dict[str, Any]]
    cv_calibration: dict[str, dict[str, Any]]
    test_curve: pd.DataFrame
    cv_curve: pd.DataFrame
    subgroups: dict[str, Any]
    importance: dict[str, float]

    @property
    def ece(self) -> float:
        return expected_calibration_error(self.calibration_bins)


def subgroup_labels(test: pd.DataFrame, feature_config: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each patient's group per SUBGROUP_FIELDS of the schema: the field's value, or for a
    numeric field its band (`<name>_band`, cut at feature_config's `<name>_band_edges`)."""
    labels = {}
    for name in SUBGROUP_FIELDS:
        if isinstance(FEATURES_BY_NAME[name], NumericField):
            edges = tuple(feature_config[f"{name}_band_edges"])
            labels[f"{name}_band"] = cut_bands(test[name], edges).to_numpy()
        else:
            labels[name] = test[name].to_numpy()
    return labels


def evaluate_on_test(
    model: Any,
    test: pd.DataFrame,
    oof: pd.DataFrame,
    *,
    metadata: Mapping[str, Any],
    settings: EvaluateParams,
) -> HeldOutEvaluation:
    """Score the test split with the fitted model at its decision threshold (from metadata);
    calibration and decision curves also out of fold (the tune stage's predictions)."""
    threshold = float(metadata["decision_threshold"])
    y_test = test[TARGET].to_numpy()
    features = test[list(FEATURE_NAMES)]
    probability = model.predict_proba(features)[:, 1]
    bootstrap: dict[str, Any] = {
        "n_resamples": settings.bootstrap_resamples,
        "seed": settings.bootstrap_seed,
    }
    y_oof, oof_probability = oof[TARGET].to_numpy(), oof["oof_probability"].to_numpy()
    importance = permutation_importance(
        model,
        features,
        y_test,
        scoring="roc_auc",
        n_repeats=settings.importance_repeats,
        random_state=settings.importance_seed,
    )
    return HeldOutEvaluation(
        threshold=threshold,
        y_test=y_test,
        probability=probability,
        y_oof=y_oof,
        oof_probability=oof_probability,
        bootstrap=bootstrap,
        test_metrics=metrics_with_intervals(y_test, probability, threshold, **bootstrap),
        calibration_bins=calibration_table(y_test, probability, n_bins=settings.calibration_bins),
        test_calibration=calibration_intercept_slope(y_test, probability),
        cv_calibration=calibration_intercept_slope(y_oof, oof_probability),
        test_curve=decision_curve(y_test, probability, **bootstrap),
        cv_curve=decision_curve(y_oof, oof_probability, **bootstrap),
        subgroups={
            name: subgroup_metrics(y_test, probability, groups, threshold, **bootstrap)
            for name, groups in subgroup_labels(test, metadata["feature_config"]).items()
        },
        importance=dict(zip(FEATURE_NAMES, importance.importances_mean, strict=True)),
    )


def _rounded_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report with every float rounded (metrics.rounded), for byte-stable diffs."""
    return cast(dict[str, Any], rounded(report))


def _values(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """{name: {value, ci_low, ci_high}} -> {name: value}."""
    return {name: entry["value"] for name, entry in entries.items()}


def metrics_report(
    result: HeldOutEvaluation,
    *,
    tuning: Mapping[str, Any],
    nested_cv: Mapping[str, Any],
    instability: Mapping[str, Any],
) -> dict[str, Any]:
    """reports/metrics.json: flat, stable keys for `dvc metrics` (test, cv, instability)."""
    return _rounded_report(
        {
            "test": {
                **_values(result.test_metrics),
                "threshold": result.threshold,
                "n": len(result.y_test),
                "positives": int(result.y_test.sum()),
                "ece": result.ece,
                **_values(result.test_calibration),
            },
            "cv": {
                **{key: tuning["cv"][key] for key in CV_SUMMARY_KEYS},
                **_values(result.cv_calibration),
                # Nested CV around the whole search: the estimate without the selection
                # optimism of roc_auc (the best trial scored on the folds that chose it).
                "roc_auc_nested": nested_cv["nested"]["roc_auc"],
                "roc_auc_nested_std": nested_cv["nested"]["roc_auc_std"],
            },
            "instability": {"mape": instability["mape"]},
        }
    )


def missing_data_counts(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, int]:
    """Missing bmi and unrecorded smoking status over both splits."""
    both = pd.concat([train, test])
    return {
        "rows": int(len(both)),
        "bmi_missing": int(both["bmi"].isna().sum()),
        "smoking_unknown": int((both["smoking_status"] == "Unknown").sum()),
    }


def evaluation_report(
    result: HeldOutEvaluation,
    *,
    train: pd.DataFrame,
    test: pd.DataFrame,
    metadata: Mapping[str, Any],
    nested_cv: Mapping[str, Any],
    instability: Mapping[str, Any],
    provenance: Mapping[str, str],
) -> dict[str, Any]:
    """reports/evaluation.json: test metrics with CIs, baselines, calibration, decision
    curves, subgroups, internal validation and the threshold with its policy."""
    threshold_cv = metadata["threshold_cv_metrics"]
    return _rounded_report(
        {
            "test": result.test_metrics,
            "baselines": baseline_metrics(train, test, target=TARGET),
            "calibration": {
                "bins": result.calibration_bins,
                "ece": result.ece,
                "test": result.test_calibration,
                "cv": result.cv_calibration,
                "intercept_slope_ci_method": CALIBRATION_CI_METHOD,
            },
            "decision_curve": {
                "thresholds": [
                    float(result.test_curve["threshold"].min()),
                    float(result.test_curve["threshold"].max()),
                ],
                "test": useful_ranges(result.test_curve),
                "cv": useful_ranges(result.cv_curve),
            },
            "bootstrap": {"method": BOOTSTRAP_METHOD, **result.bootstrap},
            "missing_data": missing_data_counts(train, test),
            "provenance": dict(provenance),
            "internal_validation": {
                "nested_cv": {key: nested_cv[key] for key in ("method", "n_trials", "nested")},
                "instability": instability,
            },
            "subgroups": result.subgroups,
            "threshold": {
                "value": result.threshold,
                **metadata["threshold_policy"],
                **{f"cv_{key}": threshold_cv[key] for key in THRESHOLD_CV_KEYS},
            },
        }
    )


def evaluation_plot_tables(result: HeldOutEvaluation) -> dict[str, pd.DataFrame]:
    """The tables of reports/plots/ (file stem -> table, rounded for stable diffs), with the
    reference lines `dvc plots` draws next to the curves (dvc.yaml `plots:`)."""
    tables = plot_tables(
        result.y_test,
        result.probability,
        result.threshold,
        calibration=result.calibration_bins,
        importance=result.importance,
    )
    tables["calibration_smooth"] = smoothed_calibration_curve(
        result.y_test, result.probability, **result.bootstrap
    )
    tables["calibration_smooth_cv"] = smoothed_calibration_curve(
        result.y_oof, result.oof_probability, **result.bootstrap
    )
    tables["decision_curve"] = result.test_curve.assign(
        model_cv=result.cv_curve["model"], treat_all_cv=result.cv_curve["treat_all"]
    )
    tables["roc"] = tables["roc"].assign(chance=tables["roc"]["fpr"])
    tables["calibration"] = tables["calibration"].assign(
        perfect=tables["calibration"]["mean_predicted"]
    )
    for name in ("calibration_smooth", "calibration_smooth_cv"):
        tables[name] = tables[name].assign(perfect=tables[name]["predicted"])
    return {name: table.round(6) for name, table in tables.items()}


def predictions_table(result: HeldOutEvaluation) -> pd.DataFrame:
    """reports/test_predictions.csv: outcome and probability per test patient (row order of
    the prepared test split), for paired comparisons between experiments."""
    return pd.DataFrame({TARGET: result.y_test, "probability": result.probability}).round(8)
