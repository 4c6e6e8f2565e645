"""Live monitoring computations: pure functions of a live window (no I/O, no web framework).

The service (app/live_metrics_exporter.py) reads windows from the prediction log and exports what
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

from stroke_risk.data.schema import FEATURE_NAMES, FEATURES, CategoricalField, NumericField
from stroke_risk.evaluation.metrics import ranking_metrics


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

    ROC-AUC is stroke_risk.evaluation.metrics.ranking_metrics (the project's one implementation).
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
    from threadpoolctl import threadpool_limits

    if min(len(reference), len(live)) < 2 * folds:
        return None
    X = np.vstack([design_rows(reference), design_rows(live)])
    y = np.r_[np.zeros(len(reference), dtype=int), np.ones(len(live), dtype=int)]
    scores = np.empty(len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # One OpenMP thread: on a few rows thread start-up outweighs the work, and on a busy
    # host (the service's own workers, other processes) every extra thread oversubscribes
    # the cores -- a fit measured 1 s on one thread took 56 s with one per core.
    with threadpool_limits(limits=1, user_api="openmp"):
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
    reference bin (stroke_risk.monitoring.drift.numeric_bin_shares' convention), missing as None;
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


# --- relationships between numeric fields ------------------------------------------------


@dataclass(frozen=True)
class CorrelationDrift:
    """Rank correlation of a pair of numeric fields, live vs the training split, and the
    p-value of 'the same correlation' (stroke_risk.monitoring.drift.correlation_change_pvalue)."""

    pair: str
    live: float
    reference: float
    pvalue: float


def correlation_drift(
    reference_correlations: Mapping[str, Mapping[str, float]],
    live: Sequence[Mapping[str, Any]],
) -> list[CorrelationDrift]:
    """Compare each numeric pair's rank correlation in the live window with the profile's
    ``correlations`` (all training rows).

    Sees a broken relationship (e.g. age and glucose no longer rising together) that no
    per-field statistic can. The pairs are the profile's (keys "first:second"); pairs with
    fewer than 4 complete live rows or without spread are left out.
    """
    from stroke_risk.monitoring.drift import (
        RankCorrelation,
        correlation_change_pvalue,
        rank_correlation,
    )

    names = [spec.name for spec in FEATURES]
    live_rows = design_rows(live)
    results = []
    for pair, stored in reference_correlations.items():
        first, second = pair.split(":")
        if first not in names or second not in names:
            continue
        live_correlation = rank_correlation(
            live_rows[:, names.index(first)], live_rows[:, names.index(second)]
        )
        if live_correlation is None:
            continue
        reference = RankCorrelation(float(stored["spearman"]), int(stored["rows"]))
        pvalue = correlation_change_pvalue(live_correlation, reference)
        results.append(CorrelationDrift(pair, live_correlation.rho, reference.rho, pvalue))
    return results


# --- calibration on labelled predictions ---------------------------------------------------

# Below this many expected strokes the normal approximation of the observed count is poor.
MIN_EXPECTED_POSITIVES = 5.0


@dataclass(frozen=True)
class CalibrationCheck:
    """Observed strokes vs the number the probabilities expect (calibration-in-the-large).

    ``pvalue``: two-sided, observed count ~ normal(sum p, sum p (1 - p)) with a
    continuity correction, i.e. 'the model is calibrated on these patients'. A doubled
    prevalence or a shifted risk (labels only; the inputs unchanged) moves it while
    ROC-AUC and recall, which only see the ranking, stay put.
    """

    labels: int
    observed: int
    expected: float
    observed_expected_ratio: float
    pvalue: float


def calibration_check(
    probabilities: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray
) -> CalibrationCheck | None:
    """Return the check, or None while fewer than MIN_EXPECTED_POSITIVES strokes are expected."""
    from scipy import stats

    p = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    y = np.asarray(labels, dtype=int)
    expected = float(p.sum())
    variance = float(np.sum(p * (1 - p)))
    if expected < MIN_EXPECTED_POSITIVES or variance <= 0:
        return None
    observed = int(y.sum())
    excess = max(abs(observed - expected) - 0.5, 0.0)
    pvalue = float(2 * stats.norm.sf(excess / math.sqrt(variance)))
    return CalibrationCheck(len(y), observed, expected, observed / expected, min(pvalue, 1.0))


# --- every figure of the service's windows -------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One exported value: a gauge name, its label pairs and the value."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LiveWindows:
    """What the figures are computed from: the current model version's rows only.

    ``records``/``probabilities``: the drift window (newest first); ``labelled_*``: the
    performance window's labelled predictions; ``recent_labelled_*``: the labelled
    predictions of the drift window (calibration follows recent labels, not a window of
    many days).
    """

    records: Sequence[Mapping[str, Any]]
    probabilities: Sequence[float]
    labelled_probabilities: Sequence[float]
    labels: Sequence[int]
    recent_labelled_probabilities: Sequence[float]
    recent_labels: Sequence[int]


@dataclass(frozen=True)
class FigureSettings:
    """The service settings the figures depend on (app/settings.py's monitor_* values)."""

    decision_threshold: float
    min_drift_records: int
    min_labels: int
    min_positive_labels: int
    min_negative_labels: int
    binned: bool = False


def drift_figures(report: Any, *, min_records: int) -> list[Figure]:
    """Figures of a drift.DriftReport; only the window size below min_records."""
    figures = [Figure("stroke_drift_window_records", float(report.window_records))]
    if report.window_records < min_records:
        return figures
    for name, drift in report.features.items():
        feature = (("feature", name),)
        figures.append(Figure("stroke_feature_missing_rate", drift.missing_rate, feature))
        if drift.psi is not None:
            figures.append(Figure("stroke_feature_psi", drift.psi, feature))
        if drift.pvalue is not None:
            labels = (("feature", name), ("test", drift.test))
            figures.append(Figure("stroke_feature_drift_pvalue", drift.pvalue, labels))
        if drift.unseen_category_rate is not None:
            figures.append(
                Figure("stroke_feature_unseen_category_rate", drift.unseen_category_rate, feature)
            )
    if report.drift_score is not None:
        figures.append(Figure("stroke_drift_score", report.drift_score))
    return figures


def performance_figures(
    probabilities: Sequence[float], labels: Sequence[int], settings: FigureSettings
) -> list[Figure]:
    """Label counts, plus ROC-AUC/recall/precision/Brier once enough of each class exist."""
    counts = label_counts(labels)
    figures = [
        Figure("stroke_live_labels", float(counts.total)),
        Figure("stroke_live_positive_labels", float(counts.positives)),
        Figure("stroke_live_negative_labels", float(counts.negatives)),
    ]
    enough = counts.enough(
        min_labels=settings.min_labels,
        min_positives=settings.min_positive_labels,
        min_negatives=settings.min_negative_labels,
    )
    performance = (
        live_performance(probabilities, labels, settings.decision_threshold) if enough else None
    )
    if performance is not None:
        values = {
            "stroke_live_roc_auc": performance.roc_auc,
            "stroke_live_recall": performance.recall,
            "stroke_live_precision": performance.precision,
            "stroke_live_brier": performance.brier,
        }
        figures += [Figure(name, value) for name, value in values.items() if value is not None]
    return figures


def calibration_figures(probabilities: Sequence[float], labels: Sequence[int]) -> list[Figure]:
    """Observed/expected strokes among recent labelled predictions and its p-value."""
    check = calibration_check(probabilities, labels)
    if check is None:
        return []
    return [
        Figure("stroke_live_observed_expected_ratio", check.observed_expected_ratio),
        Figure("stroke_live_calibration_pvalue", check.pvalue),
    ]


def estimated_figures(probabilities: Sequence[float], settings: FigureSettings) -> list[Figure]:
    """Label-free ROC-AUC, recall and precision (min_drift_records records or more)."""
    if len(probabilities) < settings.min_drift_records:
        return []
    estimate = estimated_performance(probabilities, settings.decision_threshold)
    values = {
        "stroke_estimated_roc_auc": estimate.roc_auc,
        "stroke_estimated_recall": estimate.recall,
        "stroke_estimated_precision": estimate.precision,
    }
    return [Figure(name, value) for name, value in values.items() if value is not None]


def correlation_figures(
    reference_correlations: Mapping[str, Mapping[str, float]] | None,
    records: Sequence[Mapping[str, Any]],
    settings: FigureSettings,
) -> list[Figure]:
    """Live rank correlation and its p-value per numeric pair (raw values only; none
    without the profile's ``correlations``)."""
    if settings.binned or not reference_correlations or len(records) < settings.min_drift_records:
        return []
    figures = []
    for drift in correlation_drift(reference_correlations, records):
        pair = (("pair", drift.pair),)
        figures.append(Figure("stroke_feature_correlation", drift.live, pair))
        figures.append(Figure("stroke_feature_correlation_pvalue", drift.pvalue, pair))
    return figures


def live_figures(
    reference_profile: Mapping[str, Any], windows: LiveWindows, settings: FigureSettings
) -> list[Figure]:
    """Every drift and performance figure of the service except the drift classifier's.

    The one computation behind the exported gauges (app/live_metrics_exporter.py) and the
    alert-quality benchmark (benchmarks/alerts.py).
    """
    from stroke_risk.monitoring.drift import compute_drift

    report = compute_drift(reference_profile, windows.records, binned=settings.binned)
    return (
        drift_figures(report, min_records=settings.min_drift_records)
        + correlation_figures(reference_profile.get("correlations"), windows.records, settings)
        + performance_figures(windows.labelled_probabilities, windows.labels, settings)
        + calibration_figures(windows.recent_labelled_probabilities, windows.recent_labels)
        + estimated_figures(windows.probabilities, settings)
    )
