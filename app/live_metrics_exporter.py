"""The scrape-time Prometheus collector of live drift and performance figures.

LiveMetricsCollector exports, for the current model version's rows of the prediction
log: drift, live performance (label-based, once enough labels of each class exist),
calibration, label-free estimated performance and multivariate drift. The figures are
computed by stroke_risk.monitoring.live.live_figures once for the whole service and
kept in the log's figure store (stroke_risk/monitoring/shared_figures.py: a file next
to the SQLite log, a row of the PostgreSQL log), so every worker and replica
exports the same numbers. FIGURE_METRICS names and documents every exported gauge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.background_job import BackgroundJob
from app.settings import Settings
from stroke_risk.monitoring.live import (
    Figure,
    FigureSettings,
    LiveWindows,
    classifier_drift_auc,
    live_figures,
)
from stroke_risk.monitoring.log_backend import STORE_ERRORS, PredictionStore
from stroke_risk.monitoring.prediction_log import Window
from stroke_risk.monitoring.shared_figures import stored_figures

logger = logging.getLogger(__name__)

# The multivariate drift classifier is refitted at most this often per process.
MULTIVARIATE_SECONDS = 60.0


def drift_window(settings: Settings) -> Window:
    return Window(settings.monitor_drift_window_records, settings.monitor_drift_window_seconds)


def performance_window(settings: Settings) -> Window:
    return Window(
        settings.monitor_performance_window_records, settings.monitor_performance_window_seconds
    )


# --- Prometheus families -----------------------------------------------------------------

# Every figure the collector exports: name -> (documentation, label names).
FIGURE_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "stroke_drift_window_records": ("Records in the live drift window", ()),
    "stroke_feature_psi": ("PSI of the live window vs the reference profile", ("feature",)),
    "stroke_feature_drift_pvalue": (
        "p-value of the live window vs the reference (KS numeric, chi-square categorical)",
        ("feature", "test"),
    ),
    "stroke_feature_missing_rate": ("Share of missing values in the live window", ("feature",)),
    "stroke_feature_unseen_category_rate": (
        "Share of categorical values absent from the reference profile",
        ("feature",),
    ),
    "stroke_drift_score": ("Overall drift score (max PSI)", ()),
    "stroke_feature_correlation": (
        "Spearman correlation of a numeric pair in the live window",
        ("pair",),
    ),
    "stroke_feature_correlation_pvalue": (
        "p-value of 'same rank correlation as the reference' for a numeric pair",
        ("pair",),
    ),
    "stroke_live_labels": ("Labelled predictions in the performance window", ()),
    "stroke_live_positive_labels": ("Labelled strokes in the performance window", ()),
    "stroke_live_negative_labels": ("Labelled non-strokes in the performance window", ()),
    "stroke_live_roc_auc": ("Rolling ROC-AUC from feedback", ()),
    "stroke_live_recall": ("Rolling recall at the decision threshold", ()),
    "stroke_live_precision": ("Rolling precision at the threshold", ()),
    "stroke_live_brier": ("Rolling Brier score from feedback", ()),
    "stroke_live_observed_expected_ratio": (
        "Labelled strokes / strokes expected by the probabilities (drift window)",
        (),
    ),
    "stroke_live_calibration_pvalue": (
        "p-value of 'observed strokes match the probabilities' (drift window's labels)",
        (),
    ),
    "stroke_estimated_roc_auc": ("ROC-AUC expected from the probabilities", ()),
    "stroke_estimated_recall": ("Recall expected from the probabilities", ()),
    "stroke_estimated_precision": ("Precision expected from the probabilities", ()),
    "stroke_multivariate_drift_auc": (
        "ROC-AUC of a classifier telling the live window from the reference (0.5: no drift)",
        (),
    ),
    "stroke_figures_age_seconds": (
        "Seconds since the exported drift and performance figures were computed",
        (),
    ),
}
COLLECTED_NAMES = tuple(FIGURE_METRICS)


def metric_families(figures: Iterable[Figure]) -> list[GaugeMetricFamily]:
    """Gauge families of the figures, in FIGURE_METRICS order (unknown names refused)."""
    families: dict[str, GaugeMetricFamily] = {}
    for figure in figures:
        documentation, label_names = FIGURE_METRICS[figure.name]
        if figure.name not in families:
            families[figure.name] = GaugeMetricFamily(
                figure.name, documentation, labels=list(label_names) or None
            )
        labels = dict(figure.labels)
        families[figure.name].add_metric([labels[n] for n in label_names], figure.value)
    return [families[name] for name in FIGURE_METRICS if name in families]


def figure_settings(settings: Settings, decision_threshold: float) -> FigureSettings:
    return FigureSettings(
        decision_threshold=decision_threshold,
        min_drift_records=settings.monitor_min_drift_records,
        min_labels=settings.monitor_min_labels,
        min_positive_labels=settings.monitor_min_positive_labels,
        min_negative_labels=settings.monitor_min_negative_labels,
        binned=settings.monitor_store == "binned",
    )


class LiveMetricsCollector(Collector):
    """Prometheus collector exporting the whole service's figures, the same in every worker.

    Only rows of ``model_version`` count. The figures (stroke_risk.monitoring.live
    .live_figures of the shared log's windows) live in the log's figure store (a file next
    to the SQLite log, a row of the PostgreSQL log): recomputed by one process at most
    every ``settings.monitor_cache_seconds`` and exported by all, so the answer does not
    depend on which worker or replica is
    scraped. The drift classifier's AUC is stored the same way, refitted by one process
    in a background thread at most every MULTIVARIATE_SECONDS. A store error is logged
    (without any feature value) and the scrape exports the last stored figures.
    """

    def __init__(
        self,
        store: PredictionStore,
        reference_profile: Mapping[str, Any],
        *,
        decision_threshold: float,
        model_version: str,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.reference_profile = reference_profile
        self.decision_threshold = decision_threshold
        self.model_version = model_version
        self.settings = settings
        self.binned = settings.monitor_store == "binned"
        self.joint_sample = None if self.binned else reference_profile.get("joint_sample")
        self.clock = clock  # wall time: compared across processes
        self.figures = store.shared_figures("figures", model_version)
        self.multivariate = store.shared_figures("multivariate", model_version)
        self._lock = threading.Lock()
        self._multivariate_job: BackgroundJob | None = None
        self._multivariate_value: float | None = None
        # Called before the log is read (the prediction-log writer's flush), so this worker's own
        # buffered records are counted.
        self.before_read: Callable[[], object] | None = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Lets the registry check name clashes without querying the store.
        return [GaugeMetricFamily(name, name) for name in COLLECTED_NAMES]

    def windows(self) -> LiveWindows:
        """Read the current model version's windows from the shared log."""
        settings, version = self.settings, self.model_version
        if self.before_read is not None:
            self.before_read()
        drift = drift_window(settings)
        records = self.store.recent_features(drift, model_version=version)
        labelled = self.store.labelled_window(performance_window(settings), model_version=version)
        recent = self.store.labelled_window(drift, model_version=version)
        return LiveWindows(
            records=records,
            probabilities=self.store.recent_probabilities(drift, model_version=version),
            labelled_probabilities=[p.probability for p in labelled],
            labels=[p.label for p in labelled],
            recent_labelled_probabilities=[p.probability for p in recent],
            recent_labels=[p.label for p in recent],
        )

    def compute(self) -> list[Figure]:
        """Every figure of the shared windows except the classifier's (no caching)."""
        return live_figures(
            self.reference_profile,
            self.windows(),
            figure_settings(self.settings, self.decision_threshold),
        )

    def _is_fresh(self, document: Mapping[str, Any] | None, max_age: float) -> bool:
        return document is not None and self.clock() - float(document["computed_at"]) < max_age

    def current_figures(self) -> tuple[float, list[Figure]] | None:
        """The shared figures, recomputed first when stale and no other process is at it.

        Before the first figures exist a scrape waits for whoever computes them, so a
        warmed-up service never exports a scrape without them.
        """
        max_age = self.settings.monitor_cache_seconds
        document = self.figures.read()
        if not self._is_fresh(document, max_age):
            with self.figures.lease(wait=document is None) as held:
                document = self.figures.read()  # someone may have just written it
                if held and not self._is_fresh(document, max_age):
                    try:
                        figures = self.compute()
                        self.figures.write(self.clock(), figures)
                        self._refresh_multivariate(figures)
                    except STORE_ERRORS as error:
                        logger.warning(
                            "live monitoring: cannot read the prediction log (%s)",
                            type(error).__name__,
                        )
                    else:
                        document = self.figures.read()
        if document is None:
            return None
        return float(document["computed_at"]), stored_figures(document)

    def _refresh_multivariate(self, figures: Sequence[Figure]) -> None:
        """Start a refit of the drift classifier when its shared value is due."""
        window = next((f.value for f in figures if f.name == "stroke_drift_window_records"), 0)
        if not self.joint_sample or window < self.settings.monitor_min_drift_records:
            return
        if self._is_fresh(self.multivariate.read(), MULTIVARIATE_SECONDS):
            return
        if self._multivariate_job is not None and self._multivariate_job.running():
            return
        records = self.store.recent_features(
            drift_window(self.settings), model_version=self.model_version
        )
        self._multivariate_auc(records)

    def _multivariate_auc(self, records: list[dict[str, Any]]) -> None:
        """Fit the drift classifier in a background job (a fit takes seconds: never on the
        scrape path, a scrape timeout can be as short as the interval)."""
        self._multivariate_job = BackgroundJob(
            self._fit_multivariate, list(records), name="stroke-drift-classifier"
        )

    def _fit_multivariate(self, records: list[dict[str, Any]]) -> None:
        with self.multivariate.lease(wait=False) as held:
            if not held or self._is_fresh(self.multivariate.read(), MULTIVARIATE_SECONDS):
                return
            try:
                value = classifier_drift_auc(self.joint_sample or [], records)
            except (ValueError, ArithmeticError) as error:  # the scrape goes on without it
                logger.warning(
                    "live monitoring: drift classifier failed (%s)", type(error).__name__
                )
                return
            figures = [] if value is None else [Figure("stroke_multivariate_drift_auc", value)]
            try:
                self.multivariate.write(self.clock(), figures)
            except STORE_ERRORS as error:
                logger.warning(
                    "live monitoring: drift classifier not stored (%s)", type(error).__name__
                )
                return
            self._multivariate_value = value

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            current = self.current_figures()
            if current is None:
                return []
            computed_at, figures = current
            multivariate = self.multivariate.read()
            if multivariate is not None and self.joint_sample:
                figures += stored_figures(multivariate)
            figures.append(
                Figure("stroke_figures_age_seconds", max(self.clock() - computed_at, 0.0))
            )
            return metric_families(figures)
