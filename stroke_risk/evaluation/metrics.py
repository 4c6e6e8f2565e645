"""Metrics with bootstrap confidence intervals, calibration (threshold policies: thresholds.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve, roc_curve


def ranking_metrics(y_true: np.ndarray, probability: np.ndarray) -> tuple[float, float]:
    """(ROC-AUC, average precision) computed as sklearn does, without its per-call checks.

    The bootstrap calls this thousands of times; sklearn's input validation would
    dominate the evaluate stage's run time. Tests compare it with sklearn.
    """
    order = np.argsort(-probability, kind="mergesort")
    sorted_labels = y_true[order]
    sorted_scores = probability[order]
    # Last index of each run of tied scores: one ROC/PR point per distinct threshold.
    distinct = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(sorted_scores) - 1]
    tps = np.cumsum(sorted_labels)[distinct]
    fps = distinct + 1 - tps
    if tps[-1] == 0 or fps[-1] == 0:
        return float("nan"), float("nan")
    recall = tps / tps[-1]
    precision = tps / (tps + fps)
    average_precision = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    roc_auc = float(np.trapezoid(np.r_[0.0, recall], np.r_[0.0, fps / fps[-1]]))
    return roc_auc, average_precision


def probability_metrics(y_true: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Threshold-free metrics: discrimination and probabilistic accuracy."""
    y_true = np.asarray(y_true, dtype=float)
    probability = np.asarray(probability, dtype=float)
    roc_auc, average_precision = ranking_metrics(y_true, probability)
    clipped = np.clip(probability, 1e-15, 1 - 1e-15)
    return {
        "roc_auc": roc_auc,
        "average_precision": average_precision,
        "brier": float(np.mean((probability - y_true) ** 2)),
        "log_loss": float(-np.mean(y_true * np.log(clipped) + (1 - y_true) * np.log(1 - clipped))),
    }


def threshold_metrics(
    y_true: np.ndarray, probability: np.ndarray, threshold: float
) -> dict[str, float]:
    """Metrics of the decision rule 'positive when probability >= threshold'.

    Undefined ratios (no predicted positives, no positives) are 0, as sklearn's
    zero_division=0.
    """
    actual = np.asarray(y_true) == 1
    predicted = np.asarray(probability) >= threshold
    tp = float(np.sum(actual & predicted))
    fp = float(np.sum(~actual & predicted))
    fn = float(np.sum(actual & ~predicted))
    tn = float(np.sum(~actual & ~predicted))
    return {
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "specificity": tn / (tn + fp) if tn + fp else 0.0,
        "positive_rate": float(predicted.mean()),
    }


def all_metrics(y_true: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    return {
        **probability_metrics(y_true, probability),
        **threshold_metrics(y_true, probability, threshold),
    }


def resample_weights(n: int, *, n_resamples: int, seed: int) -> np.ndarray:
    """Plain patient bootstrap as a (n_resamples, n) matrix of how often each row is drawn.

    Resampling patients, not classes: the number of strokes varies between resamples as it
    would between samples of the population, so intervals of prevalence-dependent metrics
    (precision, AP, share flagged) are not made too narrow. Every statistic below takes these
    weights, so a whole bootstrap is a few matrix operations instead of a Python loop.
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_resamples, n))
    flat = (draws + n * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(float)


def weighted_ranking_metrics(
    y_true: np.ndarray, probability: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(ROC-AUC, average precision) per row of weights, as sklearn computes them on the
    resample that repeats row i weights[r, i] times. NaN where a resample lacks a class."""
    order = np.argsort(-probability, kind="mergesort")
    sorted_scores = probability[order]
    labels = y_true[order].astype(float)
    w = np.atleast_2d(weights)[:, order]
    distinct = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(sorted_scores) - 1]
    tps = np.cumsum(w * labels, axis=1)[:, distinct]
    fps = np.cumsum(w * (1 - labels), axis=1)[:, distinct]
    total_p, total_n = tps[:, -1:], fps[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tps / total_p
        fpr = fps / total_n
        precision = np.where(tps + fps > 0, tps / (tps + fps), 0.0)
        recall_prev = np.c_[np.zeros(len(w)), recall[:, :-1]]
        fpr_prev = np.c_[np.zeros(len(w)), fpr[:, :-1]]
        average_precision = np.sum((recall - recall_prev) * precision, axis=1)
        roc_auc = np.sum((fpr - fpr_prev) * (recall + recall_prev) / 2, axis=1)
    undefined = (total_p[:, 0] == 0) | (total_n[:, 0] == 0)
    roc_auc[undefined] = np.nan
    average_precision[undefined] = np.nan
    return roc_auc, average_precision


def weighted_metrics(
    y_true: np.ndarray, probability: np.ndarray, threshold: float, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """all_metrics for every row of weights at once (one value per resample).

    Undefined ratios are 0 as in threshold_metrics; AUC/AP are NaN without both classes.
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(probability, dtype=float)
    w = np.atleast_2d(weights)
    total = w.sum(axis=1)
    roc_auc, average_precision = weighted_ranking_metrics(y, p, w)
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    point_loss = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    flagged = (p >= threshold).astype(float)
    tp = w @ (y * flagged)
    fp = w @ ((1 - y) * flagged)
    fn = w @ (y * (1 - flagged))
    tn = w @ ((1 - y) * (1 - flagged))

    def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        return np.divide(
            numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0
        )

    return {
        "roc_auc": roc_auc,
        "average_precision": average_precision,
        "brier": (w @ (p - y) ** 2) / total,
        "log_loss": (w @ point_loss) / total,
        "recall": ratio(tp, tp + fn),
        "precision": ratio(tp, tp + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "specificity": ratio(tn, tn + fp),
        "positive_rate": (tp + fp) / total,
    }


def percentile_interval(
    samples: np.ndarray, confidence: float = 0.95
) -> tuple[float | None, float | None]:
    """Percentile interval ignoring NaN resamples; (None, None) when all are NaN."""
    finite = np.asarray(samples, dtype=float)
    finite = finite[~np.isnan(finite)]
    if finite.size == 0:
        return None, None
    alpha = (1 - confidence) / 2
    return float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))


def bootstrap_intervals(
    y_true: np.ndarray,
    probability: np.ndarray,
    threshold: float,
    *,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
    chunk: int = 250,
) -> dict[str, tuple[float | None, float | None]]:
    """Percentile CIs of every all_metrics entry from a plain patient bootstrap.

    Resamples are processed in chunks so memory stays ~chunk x n floats; the result does
    not depend on chunk.
    """
    weights = resample_weights(len(y_true), n_resamples=n_resamples, seed=seed)
    parts = [
        weighted_metrics(y_true, probability, threshold, weights[start : start + chunk])
        for start in range(0, n_resamples, chunk)
    ]
    return {
        name: percentile_interval(np.concatenate([part[name] for part in parts]), confidence)
        for name in parts[0]
    }


def calibration_table(
    y_true: np.ndarray, probability: np.ndarray, *, n_bins: int
) -> list[dict[str, float]]:
    """Equal-frequency bins: mean predicted vs observed rate and count per bin."""
    order = np.argsort(probability, kind="stable")
    rows = []
    for chunk in np.array_split(order, n_bins):
        if len(chunk) == 0:
            continue
        rows.append(
            {
                "mean_predicted": float(probability[chunk].mean()),
                "observed_rate": float(y_true[chunk].mean()),
                "count": int(len(chunk)),
            }
        )
    return rows


def expected_calibration_error(table: list[dict[str, float]]) -> float:
    """Count-weighted mean |observed - predicted| over calibration bins."""
    total = sum(row["count"] for row in table)
    return float(
        sum(row["count"] * abs(row["observed_rate"] - row["mean_predicted"]) for row in table)
        / total
    )


def metrics_with_intervals(
    y_true: np.ndarray, probability: np.ndarray, threshold: float, *, n_resamples: int, seed: int
) -> dict[str, dict[str, float | None]]:
    """Every metric at the threshold as {value, ci_low, ci_high} (95 % bootstrap)."""
    point = all_metrics(y_true, probability, threshold)
    intervals = bootstrap_intervals(
        y_true, probability, threshold, n_resamples=n_resamples, seed=seed
    )
    return {
        name: {"value": value, "ci_low": intervals[name][0], "ci_high": intervals[name][1]}
        for name, value in point.items()
    }


MIN_SUBGROUP_POSITIVES = 10
SUBGROUP_METRICS = ("roc_auc", "recall", "precision", "positive_rate", "brier", "mean_probability")


def subgroup_metrics(
    y_true: np.ndarray,
    probability: np.ndarray,
    groups: np.ndarray,
    threshold: float,
    *,
    n_resamples: int,
    seed: int,
    min_positives: int = MIN_SUBGROUP_POSITIVES,
) -> dict[str, dict[str, object]]:
    """Metrics per subgroup value, each as {value, ci_low, ci_high} (bootstrap within the group).

    value is None where the metric is undefined in the group: AUC without both classes,
    recall without positives, precision when nobody is flagged. too_few_positives marks
    groups with fewer than min_positives strokes, whose estimates should not be read alone.
    """
    table: dict[str, dict[str, object]] = {}
    for group in sorted(set(groups.tolist()), key=str):
        mask = groups == group
        labels, scores = y_true[mask].astype(float), probability[mask]
        positives = int(labels.sum())
        flagged = scores >= threshold
        weights = resample_weights(len(labels), n_resamples=n_resamples, seed=seed)
        samples = weighted_metrics(labels, scores, threshold, weights)
        samples["mean_probability"] = (weights @ scores) / weights.sum(axis=1)
        point = {
            name: float(values[0])
            for name, values in weighted_metrics(
                labels, scores, threshold, np.ones(len(labels))
            ).items()
        }
        point["mean_probability"] = float(scores.mean())
        defined = {
            "roc_auc": 0 < positives < len(labels),
            "recall": positives > 0,
            "precision": bool(flagged.any()),
        }
        row: dict[str, object] = {
            "n": int(mask.sum()),
            "positives": positives,
            "too_few_positives": positives < min_positives,
        }
        for name in SUBGROUP_METRICS:
            if not defined.get(name, True):
                row[name] = {"value": None, "ci_low": None, "ci_high": None}
                continue
            values = samples[name]
            if name == "recall":  # resamples without a positive have no recall
                values = np.where(weights @ labels > 0, values, np.nan)
            if name == "precision":
                values = np.where(weights @ flagged > 0, values, np.nan)
            low, high = percentile_interval(values)
            row[name] = {"value": point[name], "ci_low": low, "ci_high": high}
        table[str(group)] = row
    return table


def rounded(value: object, digits: int = 6) -> object:
    """Round floats recursively so reports diff cleanly and stay byte-stable."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def baseline_metrics(
    train: pd.DataFrame, test: pd.DataFrame, *, target: str
) -> dict[str, dict[str, float]]:
    """Context for the model's test metrics: the training prevalence for everyone, and a
    logistic regression on age alone fitted on the training split."""
    y_test = test[target].to_numpy()
    prevalence = float(train[target].mean())
    age_model = LogisticRegression().fit(train[["age"]], train[target])
    return {
        "prevalence": probability_metrics(y_test, np.full(len(y_test), prevalence)),
        "age_only": probability_metrics(y_test, age_model.predict_proba(test[["age"]])[:, 1]),
    }


def plot_tables(
    y_true: np.ndarray,
    probability: np.ndarray,
    threshold: float,
    *,
    calibration: list[dict[str, float]],
    importance: dict[str, float],
) -> dict[str, pd.DataFrame]:
    """The data behind `dvc plots`: file stem -> table (rounded for stable diffs)."""
    fpr, tpr, _ = roc_curve(y_true, probability)
    precision, recall, _ = precision_recall_curve(y_true, probability)
    importance_table = pd.DataFrame(
        {"feature": list(importance), "importance": list(importance.values())}
    )
    return {
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(6),
        "pr": pd.DataFrame({"recall": recall, "precision": precision}).round(6),
        "calibration": pd.DataFrame(calibration).round(6),
        "confusion": pd.DataFrame(
            {"actual": y_true, "predicted": (probability >= threshold).astype(int)}
        ),
        "importance": importance_table.sort_values(
            "importance", ascending=False, kind="stable"
        ).round(6),
    }
