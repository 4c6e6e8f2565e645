"""Live monitoring computations: pure functions of a live window (no I/O, no web framework).

The service (app/monitoring.py) reads windows from the prediction log and exports what
these functions return as Prometheus gauges:

- ``check_reference_profile``: the keys drift relies on (docs/CONTRACTS.md);
- ``live_performance``: ROC-AUC, recall, precision and Brier of labelled predictions,
  only once enough labels of *each* class exist (at 5 % prevalence 50 labels hold 2-3
  positives, and recall could only be 0, 0.5 or 1);
- ``estimated_performance``: the same figures estimated without labels from calibrated
  probabilities (confidence-based performance estimation, as NannyML's CBPE);
- ``classifier_drift_auc``: multivariate drift, the cross-validated ROC-AUC of a classifier
  telling a reference sample from the live window (0.5: indistinguishable). It sees
  changes in the joint distribution (e.g. the age-glucose relationship) that per-field
  PSI cannot;
- ``bin_record``: a record reduced to the reference profile's bins and categories, for a
  prediction log that keeps no raw values.

Every figure is per model version: callers pass only the current version's rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stroke_risk.evaluation import ranking_metrics
from stroke_risk.schema import FEATURE_NAMES, FEATURES, CategoricalField, NumericField


def check_reference_profile(profile: Mapping[str, Any]) -> None:
    """Raise ValueError if the profile lacks a field needed for drift (see CONTRACTS.md)."""
    problems: list[str] = []
    if not isinstance(profile.get("n_rows"), int) or profile["n_rows"] <= 0:
        problems.append("n_rows must be a positive integer")
    features = profile.get("features")
    if not isinstance(features, Mapping):
        raise ValueError("reference profile: 'features' must be an object")
    for name in FEATURE_NAMES:
        spec = features.get(name)
        if not isinstance(spec, Mapping):
            problems.append(f"feature {name!r} is missing")
            continue
        needed = (
            ("bin_edges", "bin_shares", "sample")
            if spec.get("kind") == "numeric"
            else ("category_shares",)
        )
        problems += [f"feature {name!r} lacks {key!r}" for key in needed if key not in spec]
        if spec.get("kind") == "numeric" and len(spec.get("bin_shares", [])) != (
            len(spec.get("bin_edges", [])) + 1
        ):
            problems.append(f"feature {name!r}: bin_shares must have len(bin_edges)+1 entries")
    if problems:
        raise ValueError("reference profile: " + "; ".join(problems))


# --- label-based performance -------------------------------------------------------------


@dataclass(frozen=True)
class LabelCounts:
    """Labels in the performance window, by class."""

    positives: int
    negatives: int

    @property
    def total(self) -> int:
        return self.positives + self.negatives

    def enough(self, *, min_labels: int, min_positives: int, min_negatives: int) -> bool:
        """Return whether live figures are meaningful: enough labels of each class."""
        return (
            self.total >= min_labels
            and self.positives >= min_positives
            and self.negatives >= min_negatives
        )


def label_counts(labels: Sequence[int] | np.ndarray) -> LabelCounts:
    """Return the number of positive and negative labels."""
    y = np.asarray(labels, dtype=int)
    positives = int(y.sum())
    return LabelCounts(positives, len(y) - positives)


@dataclass(frozen=True)
class LivePerformance:
    """Rolling performance on labelled predictions; precision is None without positives."""

    labels: int
    roc_auc: float
    recall: float
    precision: float | None
    brier: float


def live_performance(
    probabilities: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    decision_threshold: float,
) -> LivePerformance | None:
    """Performance at 'positive when probability >= decision_threshold' (as in training).

    ROC-AUC is stroke_risk.evaluation.ranking_metrics (the project's one implementation).
    Returns None unless both classes are present.
    """
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(labels, dtype=int)
    counts = label_counts(y)
    if counts.positives == 0 or counts.negatives == 0:
        return None
    predicted = p >= decision_threshold
    true_positives = int(np.sum(predicted & (y == 1)))
    predicted_positives = int(predicted.sum())
    roc_auc, _ = ranking_metrics(y, p)
    return LivePerformance(
        labels=len(y),
        roc_auc=roc_auc,
        recall=true_positives / counts.positives,
        precision=true_positives / predicted_positives if predicted_positives else None,
        brier=float(np.mean((p - y) ** 2)),
    )


# --- label-free performance estimation ---------------------------------------------------


@dataclass(frozen=True)
class EstimatedPerformance:
    """Performance expected from calibrated probabilities alone (no labels).

    If the model is calibrated on the live population, a record with probability p is a
    stroke with probability p; the expected confusion matrix follows, and from it recall,
    precision and (pairwise) ROC-AUC. A gap between these and the label-based figures, or
    a fall of these alone, signals that the model's confidence no longer matches reality
    or that the population moved to where the model discriminates less.
    """

    records: int
    roc_auc: float | None
    recall: float | None
    precision: float | None
    expected_positive_rate: float


def estimated_performance(
    probabilities: Sequence[float] | np.ndarray, decision_threshold: float
) -> EstimatedPerformance:
    """Return the expected ROC-AUC, recall and precision of a window of probabilities.

    ROC-AUC is the ratio of expectations over record pairs i != j: sum p_i (1 - p_j)
    [s_i > s_j] (ties count half) over sum p_i (1 - p_j). Figures are None when undefined
    (empty window, no predicted positive for precision).
    """
    p = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    n = len(p)
    if n == 0:
        return EstimatedPerformance(0, None, None, None, 0.0)
    q = 1.0 - p
    predicted = p >= decision_threshold
    expected_positives = float(p.sum())
    expected_true_positives = float(p[predicted].sum())
    recall = expected_true_positives / expected_positives if expected_positives > 0 else None
    predicted_count = int(predicted.sum())
    precision = expected_true_positives / predicted_count if predicted_count else None
    # Pairwise AUC: the score is the probability itself.
    order = np.argsort(p, kind="mergesort")
    sorted_p, sorted_q = p[order], q[order]
    boundaries = np.r_[0, np.nonzero(np.diff(sorted_p))[0] + 1, n]
    group_q = np.add.reduceat(sorted_q, boundaries[:-1])
    lower_q = np.r_[0.0, np.cumsum(group_q)[:-1]]  # (1 - p) mass strictly below each group
    group_of = np.repeat(np.arange(len(group_q)), np.diff(boundaries))
    # Ties count half; a record is never paired with itself.
    tied_q = group_q[group_of] - sorted_q
    numerator = float(np.sum(sorted_p * (lower_q[group_of] + 0.5 * tied_q)))
    denominator = float(p.sum() * q.sum() - np.sum(p * q))
    roc_auc = numerator / denominator if denominator > 0 else None
    return EstimatedPerformance(n, roc_auc, recall, precision, expected_positives / n)


# --- multivariate drift -----------------------------------------------------------------


def design_rows(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Return records as a float matrix for the drift classifier: numbers as they are
    (missing as NaN), categories as their schema index, unknown ones as -1."""
    columns = []
    for spec in FEATURES:
        values = [record.get(spec.name) for record in records]
        if isinstance(spec, CategoricalField):
            index = {category: position for position, category in enumerate(spec.categories)}
            columns.append([float(index.get(str(v), -1)) for v in values])
        else:
            columns.append([math.nan if v is None else float(v) for v in values])
    return np.asarray(columns, dtype=float).T.reshape(len(records), len(FEATURES))


def classifier_drift_auc(
    reference: Sequence[Mapping[str, Any]],
    live: Sequence[Mapping[str, Any]],
    *,
    folds: int = 3,
    seed: int = 0,
) -> float | None:
    """Return the cross-validated ROC-AUC of a classifier telling live from reference rows.

    About 0.5 when the live window is distributed like the reference (marginals *and*
    joint); towards 1 when they differ. A gradient-boosted tree ensemble sees interactions,
    so a changed relationship between two fields registers even when each field's own
    distribution is unchanged. None when either side has fewer than 2 * folds rows.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold

    if min(len(reference), len(live)) < 2 * folds:
        return None
    X = np.vstack([design_rows(reference), design_rows(live)])
    y = np.r_[np.zeros(len(reference), dtype=int), np.ones(len(live), dtype=int)]
    scores = np.empty(len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(X, y):
        model = HistGradientBoostingClassifier(
            max_iter=60, max_depth=3, learning_rate=0.1, random_state=seed
        )
        model.fit(X[train], y[train])
        scores[test] = model.predict_proba(X[test])[:, 1]
    roc_auc, _ = ranking_metrics(y, scores)
    return roc_auc


# --- a log without raw values ------------------------------------------------------------


def bin_record(profile: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """Return the record reduced to what drift needs: numeric fields as the index of their
    reference bin (stroke_risk.drift.numeric_bin_shares' convention), missing as None;
    categorical and binary fields unchanged."""
    binned: dict[str, Any] = {}
    for spec in FEATURES:
        value = record.get(spec.name)
        if isinstance(spec, NumericField):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                binned[spec.name] = None
            else:
                edges = profile["features"][spec.name]["bin_edges"]
                binned[spec.name] = int(np.searchsorted(edges, float(value), side="right"))
        else:
            binned[spec.name] = value
    return binned
