"""External validation of the deployed model on the outcomes it met, in plain words.

The statistics of a temporal/external validation (Steyerberg, *Clinical Prediction Models*,
2nd ed., ch. 15 and 20; Van Calster et al. 2016, J Clin Epidemiol 74:167, the calibration
hierarchy: mean calibration, then weak calibration = intercept and slope, then the smoothed
curve for moderate calibration): ROC-AUC (patient-bootstrap CI), calibration-in-the-large
and calibration slope (profile-likelihood CIs), net benefit at the decision threshold
(Vickers & Elkin 2006; bootstrap CI, against treat-all), and the smoothed calibration curve
(restricted cubic spline with a bootstrap band). Each sits next to the same statistic on the
development test split (reports/test_predictions.csv, the held-out rows nothing was fitted
on), and ``verdict`` says whether the model still holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stroke_risk.evaluation.calibration import (
    calibration_intercept_slope,
    smoothed_calibration_curve,
)
from stroke_risk.evaluation.decision_curve import net_benefit, treat_all_net_benefit
from stroke_risk.evaluation.metrics import (
    percentile_interval,
    probability_metrics,
    resample_weights,
    weighted_ranking_metrics,
)

Interval = dict[str, float | None]


@dataclass(frozen=True)
class Verdict:
    """Whether the model holds on the new outcomes, and the sentence that says so."""

    holds: bool
    problems: list[str]
    sentence: str


def _interval(value: float, bounds: tuple[float | None, float | None]) -> Interval:
    return {"value": value, "ci_low": bounds[0], "ci_high": bounds[1]}


def validation_statistics(
    y_true: np.ndarray,
    probability: np.ndarray,
    *,
    decision_threshold: float,
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """ROC-AUC, calibration intercept and slope, Brier and net benefit, each with a 95 % CI."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probability, dtype=float)
    weights = resample_weights(len(y), n_resamples=n_resamples, seed=seed)
    point = probability_metrics(y, p)
    auc_samples, _ = weighted_ranking_metrics(y, p, weights)
    calibration = calibration_intercept_slope(y, p)
    threshold = np.array([decision_threshold])
    model_nb = float(net_benefit(y, p, threshold)[0])
    model_nb_samples = net_benefit(y, p, threshold, weights)[:, 0]
    treat_all = float(treat_all_net_benefit(y, threshold)[0])
    advantage_samples = model_nb_samples - np.maximum(
        treat_all_net_benefit(y, threshold, weights)[:, 0], 0.0
    )
    brier_samples = (weights @ (p - y) ** 2) / weights.sum(axis=1)
    return {
        "n": int(len(y)),
        "events": int(y.sum()),
        "prevalence": float(y.mean()),
        "mean_predicted": float(p.mean()),
        "roc_auc": _interval(point["roc_auc"], percentile_interval(auc_samples)),
        "calibration_intercept": calibration["calibration_intercept"],
        "calibration_slope": calibration["calibration_slope"],
        "brier": _interval(point["brier"], percentile_interval(brier_samples)),
        "net_benefit": _interval(model_nb, percentile_interval(model_nb_samples)),
        "net_benefit_treat_all": treat_all,
        "net_benefit_advantage": _interval(
            model_nb - max(treat_all, 0.0), percentile_interval(advantage_samples)
        ),
        "decision_threshold": float(decision_threshold),
    }


def roc_auc_difference(
    y_new: np.ndarray,
    probability_new: np.ndarray,
    y_development: np.ndarray,
    probability_development: np.ndarray,
    *,
    n_resamples: int,
    seed: int,
) -> Interval:
    """ROC-AUC on the new outcomes minus ROC-AUC on the development test split, with a 95 %
    CI from independent patient bootstraps of the two samples (they share no patient)."""
    new_weights = resample_weights(len(y_new), n_resamples=n_resamples, seed=seed)
    development_weights = resample_weights(
        len(y_development), n_resamples=n_resamples, seed=seed + 1
    )
    new_samples, _ = weighted_ranking_metrics(
        np.asarray(y_new, dtype=int), np.asarray(probability_new, dtype=float), new_weights
    )
    development_samples, _ = weighted_ranking_metrics(
        np.asarray(y_development, dtype=int),
        np.asarray(probability_development, dtype=float),
        development_weights,
    )
    value = (
        probability_metrics(y_new, probability_new)["roc_auc"]
        - probability_metrics(y_development, probability_development)["roc_auc"]
    )
    return _interval(value, percentile_interval(new_samples - development_samples))


def _contains(interval: Mapping[str, float | None], target: float) -> bool:
    low, high = interval.get("ci_low"), interval.get("ci_high")
    return (low is None or low <= target) and (high is None or target <= high)


def verdict(statistics: Mapping[str, Any], development: Mapping[str, Any]) -> Verdict:
    """Does the model still hold? Van Calster et al. 2016's hierarchy, then discrimination
    and clinical usefulness, each judged by its 95 % CI:

    - mean calibration: the calibration intercept's CI contains 0;
    - weak calibration: the calibration slope's CI contains 1;
    - discrimination: the CI of the ROC-AUC difference (new - development) reaches 0;
    - usefulness: net benefit at the decision threshold is not clearly below treat-all and
      treat-none (the advantage's CI reaches 0).
    """
    problems: list[str] = []
    intercept = statistics["calibration_intercept"]
    if not _contains(intercept, 0.0):
        direction = "under" if (intercept["value"] or 0) > 0 else "over"
        problems.append(
            f"it {direction}-predicts on average (calibration in the large "
            f"{intercept['value']:+.2f}, 95% CI excludes 0)"
        )
    slope = statistics["calibration_slope"]
    if not _contains(slope, 1.0):
        kind = "too extreme" if (slope["value"] or 1) < 1 else "too modest"
        problems.append(
            f"its risks are {kind} (calibration slope {slope['value']:.2f}, 95% CI excludes 1)"
        )
    difference = statistics.get("roc_auc_difference")
    if difference is not None and difference["ci_high"] is not None and difference["ci_high"] < 0:
        problems.append(
            f"it discriminates worse than at development (ROC-AUC "
            f"{statistics['roc_auc']['value']:.3f} against {development['roc_auc']['value']:.3f};"
            " the 95% CI of the difference lies below 0)"
        )
    advantage = statistics["net_benefit_advantage"]
    if advantage["ci_high"] is not None and advantage["ci_high"] < 0:
        problems.append(
            "acting on it at the decision threshold does worse than treating everyone or no one"
        )
    if problems:
        sentence = "The model no longer holds on these outcomes: " + "; ".join(problems) + "."
    else:
        sentence = (
            f"The model still holds on these {statistics['n']} outcomes "
            f"({statistics['events']} events): calibration, discrimination and net benefit "
            "are compatible with its development estimates."
        )
    return Verdict(holds=not problems, problems=problems, sentence=sentence)


def calibration_curve(
    y_true: np.ndarray, probability: np.ndarray, *, n_resamples: int, seed: int
) -> pd.DataFrame:
    """The smoothed calibration curve with its band, and the diagonal (column perfect)."""
    curve = smoothed_calibration_curve(y_true, probability, n_resamples=n_resamples, seed=seed)
    curve["perfect"] = curve["predicted"]
    return curve
