"""Decision-curve analysis: is acting on the model better than treating everyone or no one?

Net benefit at threshold probability pt (Vickers & Elkin, Med Decis Making 2006):

    NB(pt) = TP/n - FP/n * pt / (1 - pt)

where a patient is flagged when the predicted probability is >= pt. pt encodes how a
clinician weighs harms against benefits: acting at pt means a false positive is worth
pt / (1 - pt) of a true positive. Treat-all has NB = prevalence - (1 - prevalence) * pt /
(1 - pt); treat-none has NB = 0. The model is useful at pt when its NB beats both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stroke_risk.evaluation.metrics import percentile_interval, resample_weights

DEFAULT_THRESHOLDS = tuple(round(0.01 * step, 2) for step in range(1, 31))  # 1 % .. 30 %


def net_benefit(
    y_true: np.ndarray,
    probability: np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Net benefit of 'flag when probability >= pt' at each pt.

    Returns shape (len(thresholds),), or (B, len(thresholds)) for (B, n) bootstrap weights.
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(probability, dtype=float)
    pt = np.asarray(thresholds, dtype=float)
    flagged = (p[:, None] >= pt[None, :]).astype(float)  # (n, T)
    w = np.ones((1, len(y))) if weights is None else np.atleast_2d(weights)
    total = w.sum(axis=1, keepdims=True)
    true_positive = (w * y) @ flagged / total
    false_positive = (w * (1 - y)) @ flagged / total
    result = true_positive - false_positive * (pt / (1 - pt))
    return result[0] if weights is None else result


def treat_all_net_benefit(
    y_true: np.ndarray, thresholds: Sequence[float] | np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Net benefit of flagging everyone (same shape convention as net_benefit)."""
    y = np.asarray(y_true, dtype=float)
    pt = np.asarray(thresholds, dtype=float)
    w = np.ones((1, len(y))) if weights is None else np.atleast_2d(weights)
    prevalence = (w @ y / w.sum(axis=1))[:, None]
    result = prevalence - (1 - prevalence) * (pt / (1 - pt))
    return result[0] if weights is None else result


def decision_curve(
    y_true: np.ndarray,
    probability: np.ndarray,
    *,
    thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS,
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Net benefit of model, treat-all and treat-none per threshold, with bootstrap CIs.

    Columns: threshold, model, treat_all, treat_none, model_ci_low, model_ci_high, and
    advantage / advantage_ci_low / advantage_ci_high: the model's net benefit minus the
    better of treat-all and treat-none, computed within each resample.
    """
    pt = np.asarray(thresholds, dtype=float)
    model = net_benefit(y_true, probability, pt)
    treat_all = treat_all_net_benefit(y_true, pt)
    weights = resample_weights(len(y_true), n_resamples=n_resamples, seed=seed)
    model_samples = net_benefit(y_true, probability, pt, weights)
    advantage_samples = model_samples - np.maximum(treat_all_net_benefit(y_true, pt, weights), 0.0)
    model_band = [percentile_interval(model_samples[:, i]) for i in range(len(pt))]
    advantage_band = [percentile_interval(advantage_samples[:, i]) for i in range(len(pt))]
    return pd.DataFrame(
        {
            "threshold": pt,
            "model": model,
            "treat_all": treat_all,
            "treat_none": np.zeros(len(pt)),
            "model_ci_low": [band[0] for band in model_band],
            "model_ci_high": [band[1] for band in model_band],
            "advantage": model - np.maximum(treat_all, 0.0),
            "advantage_ci_low": [band[0] for band in advantage_band],
            "advantage_ci_high": [band[1] for band in advantage_band],
        }
    )


def _ranges(thresholds: np.ndarray, mask: np.ndarray) -> list[list[float]]:
    """Contiguous runs of thresholds where mask holds, as [first, last] pairs."""
    runs: list[list[float]] = []
    values, kept = thresholds.tolist(), mask.tolist()
    for index, value in enumerate(values):
        if kept[index] and index > 0 and kept[index - 1]:
            runs[-1][1] = value
        elif kept[index]:
            runs.append([value, value])
    return runs


def useful_ranges(curve: pd.DataFrame) -> dict[str, Any]:
    """Where the model beats both default strategies.

    beats_defaults: thresholds where the point estimate of the advantage is > 0;
    confidently_beats_defaults: where the 95 % CI of the advantage lies above 0.
    Each is a list of [first, last] threshold runs.
    """
    thresholds = curve["threshold"].to_numpy()
    advantage = curve["advantage"].to_numpy()
    low = curve["advantage_ci_low"].astype(float).fillna(-np.inf).to_numpy()
    return {
        "beats_defaults": _ranges(thresholds, advantage > 0),
        "confidently_beats_defaults": _ranges(thresholds, low > 0),
        "max_advantage": float(advantage.max()),
        "max_advantage_threshold": float(thresholds[int(np.argmax(advantage))]),
    }


def describe_ranges(runs: list[list[float]]) -> str:
    """'2%-14%, 17%-18%' or 'no threshold' for a list of [first, last] runs."""
    if not runs:
        return "no threshold"
    return ", ".join(
        f"{100 * first:.0f}%" if first == last else f"{100 * first:.0f}%-{100 * last:.0f}%"
        for first, last in runs
    )
