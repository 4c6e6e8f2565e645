"""Threshold selection, metrics with bootstrap confidence intervals, calibration."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, precision_recall_curve, roc_auc_score, roc_curve

THRESHOLD_POLICIES = ("min_recall", "max_f1", "youden")


def select_threshold(
    y_true: np.ndarray, probability: np.ndarray, *, policy: str, target_recall: float
) -> float:
    """Pick a decision threshold from (out-of-fold) scores.

    - ``min_recall``: the highest threshold whose recall is at least target_recall, i.e.
      the most specific rule that still meets the clinical sensitivity target;
    - ``max_f1``: the threshold maximising F1;
    - ``youden``: the threshold maximising sensitivity + specificity - 1.
    Candidate thresholds are the observed scores, so the result is one of them.
    """
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=float)
    candidates = np.unique(probability)[::-1]  # descending: recall grows as we go
    positives = y_true.sum()
    negatives = len(y_true) - positives
    order = np.argsort(-probability, kind="stable")
    sorted_scores = probability[order]
    sorted_labels = y_true[order]
    # True/false positives when predicting positive for score >= candidate.
    cumulative_tp = np.cumsum(sorted_labels)
    cumulative_fp = np.cumsum(1 - sorted_labels)
    last_index = np.searchsorted(-sorted_scores, -candidates, side="right") - 1
    tp = cumulative_tp[last_index]
    fp = cumulative_fp[last_index]
    recall = tp / positives
    if policy == "min_recall":
        meeting = np.nonzero(recall >= target_recall)[0]
        return float(candidates[meeting[0]]) if len(meeting) else float(candidates[-1])
    if policy == "max_f1":
        f1 = 2 * tp / (2 * tp + fp + (positives - tp))
        return float(candidates[int(np.argmax(f1))])
    if policy == "youden":
        youden = recall - fp / negatives
        return float(candidates[int(np.argmax(youden))])
    raise ValueError(
        f"unknown threshold policy {policy!r}; expected one of {', '.join(THRESHOLD_POLICIES)}"
    )


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


def bootstrap_intervals(
    y_true: np.ndarray,
    probability: np.ndarray,
    metric_fn: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    *,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs for every metric metric_fn returns.

    Resamples are stratified by class so each contains positives (with ~12 positives a
    plain resample can miss them and leave AUC undefined).
    """
    rng = np.random.default_rng(seed)
    positive_index = np.nonzero(y_true == 1)[0]
    negative_index = np.nonzero(y_true == 0)[0]
    samples: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        index = np.concatenate(
            [
                rng.choice(positive_index, size=len(positive_index), replace=True),
                rng.choice(negative_index, size=len(negative_index), replace=True),
            ]
        )
        for name, value in metric_fn(y_true[index], probability[index]).items():
            samples.setdefault(name, []).append(value)
    alpha = (1 - confidence) / 2
    return {
        name: (float(np.nanquantile(values, alpha)), float(np.nanquantile(values, 1 - alpha)))
        for name, values in samples.items()
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
) -> dict[str, dict[str, float]]:
    """Every metric at the threshold as {value, ci_low, ci_high} (95 % bootstrap)."""
    point = all_metrics(y_true, probability, threshold)
    intervals = bootstrap_intervals(
        y_true,
        probability,
        lambda t, p: all_metrics(t, p, threshold),
        n_resamples=n_resamples,
        seed=seed,
    )
    return {
        name: {"value": value, "ci_low": intervals[name][0], "ci_high": intervals[name][1]}
        for name, value in point.items()
    }


def subgroup_metrics(
    y_true: np.ndarray, probability: np.ndarray, groups: np.ndarray, threshold: float
) -> dict[str, dict[str, float | int | None]]:
    """Metrics per subgroup value; AUC/AP are None where a group lacks one of the classes."""
    table: dict[str, dict[str, float | int | None]] = {}
    for group in sorted(set(groups.tolist()), key=str):
        mask = groups == group
        labels, scores = y_true[mask], probability[mask]
        row: dict[str, float | int | None] = {"n": int(mask.sum()), "positives": int(labels.sum())}
        both_classes = 0 < labels.sum() < len(labels)
        row["roc_auc"] = float(roc_auc_score(labels, scores)) if both_classes else None
        row["brier"] = float(brier_score_loss(labels, scores, labels=[0, 1]))
        row["mean_probability"] = float(scores.mean())
        decided = threshold_metrics(labels, scores, threshold) if labels.sum() > 0 else {}
        row["recall"] = decided.get("recall")
        row["precision"] = decided.get("precision")
        row["positive_rate"] = float((scores >= threshold).mean())
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
