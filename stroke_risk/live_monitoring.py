"""Live drift and performance metrics for the serving app, computed at scrape time.

Entry point for the app: ``install_monitoring`` (see its docstring). It opens the shared
SQLite prediction log, registers a Prometheus collector that reads the log on every
scrape, mounts ``POST /feedback`` and returns the ``LiveMonitor`` whose
``on_predictions`` the app calls after scoring.

Every gunicorn worker opens the same log file, so whichever worker answers a scrape
reports the same window: drift is never computed on one worker's partial traffic.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, Flask, Response, jsonify, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from scipy import stats

from stroke_risk.drift import PSI_EPSILON, DriftReport, compute_drift
from stroke_risk.prediction_log import (
    DuplicateFeedbackError,
    InvalidLabelError,
    LabelledPrediction,
    PredictionLog,
    PredictionLogError,
    PredictionRecord,
    Retention,
    UnknownPredictionError,
    Window,
)
from stroke_risk.schema import FEATURE_NAMES

logger = logging.getLogger(__name__)

ENV_PREFIX = "STROKE_MONITOR_"
MAX_PREDICTION_ID_LENGTH = 200
FEEDBACK_FIELDS = ("prediction_id", "stroke")
JSON_MIMETYPE = "application/json"


# --- settings ------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitoringSettings:
    """Windows, minimum counts, retention and cache of the live monitor.

    - ``drift_window``: records compared with the reference profile.
    - ``min_drift_records``: below this many records drift gauges are not exported (a
      handful of records gives meaningless PSI); ``stroke_drift_window_records`` still is.
    - ``performance_window``: labelled predictions used for live ROC-AUC etc.
    - ``min_labels``: live performance gauges appear only from this many labels with
      both classes present.
    - ``retention``: how much history the log keeps.
    - ``cache_seconds``: a worker reuses its last computed metrics this long, so several
      scrapers (or a fast scrape interval) do not recompute drift each time.
    """

    drift_window: Window = field(default_factory=lambda: Window(1000, 24 * 3600.0))
    min_drift_records: int = 50
    performance_window: Window = field(default_factory=lambda: Window(5000, None))
    min_labels: int = 50
    retention: Retention = field(default_factory=Retention)
    cache_seconds: float = 2.0
    psi_epsilon: float = PSI_EPSILON

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX
    ) -> MonitoringSettings:
        """Settings from ``STROKE_MONITOR_*`` variables; unset ones keep their defaults.

        Variables (``none`` or empty disables an optional bound):
        DRIFT_WINDOW_RECORDS, DRIFT_WINDOW_SECONDS, MIN_DRIFT_RECORDS,
        PERFORMANCE_WINDOW_RECORDS, PERFORMANCE_WINDOW_SECONDS, MIN_LABELS,
        RETENTION_MAX_ROWS, RETENTION_MAX_AGE_SECONDS, CACHE_SECONDS.
        Raises ValueError naming the variable when a value does not parse.
        """
        env = os.environ if environ is None else environ
        default = cls()

        def read(name: str, parse: Callable[[str], Any], fallback: Any, optional: bool) -> Any:
            raw = env.get(prefix + name)
            if raw is None:
                return fallback
            if optional and raw.strip().lower() in ("", "none"):
                return None
            try:
                value = parse(raw)
            except ValueError:
                raise ValueError(f"{prefix}{name}={raw!r} is not a valid number") from None
            if value < 0:
                raise ValueError(f"{prefix}{name}={raw!r} must not be negative")
            return value

        return cls(
            drift_window=Window(
                read("DRIFT_WINDOW_RECORDS", int, default.drift_window.max_records, True),
                read("DRIFT_WINDOW_SECONDS", float, default.drift_window.max_age_seconds, True),
            ),
            min_drift_records=read("MIN_DRIFT_RECORDS", int, default.min_drift_records, False),
            performance_window=Window(
                read(
                    "PERFORMANCE_WINDOW_RECORDS",
                    int,
                    default.performance_window.max_records,
                    True,
                ),
                read(
                    "PERFORMANCE_WINDOW_SECONDS",
                    float,
                    default.performance_window.max_age_seconds,
                    True,
                ),
            ),
            min_labels=read("MIN_LABELS", int, default.min_labels, False),
            retention=Retention(
                read("RETENTION_MAX_ROWS", int, default.retention.max_rows, True),
                read("RETENTION_MAX_AGE_SECONDS", float, default.retention.max_age_seconds, True),
            ),
            cache_seconds=read("CACHE_SECONDS", float, default.cache_seconds, False),
        )


def store_path_from_environ(
    project_dir: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> Path:
    """Path of the prediction log: STROKE_MONITOR_DB (relative to project_dir if relative).

    Default ``<project_dir>/var/monitoring/predictions.sqlite`` (``/var/`` is git-ignored).
    Every worker must get the same path, so it comes from the environment, not per process.
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_PREFIX + "DB") or "var/monitoring/predictions.sqlite"
    path = Path(raw)
    return path if path.is_absolute() else Path(project_dir) / path


# --- reference profile ---------------------------------------------------------------


def load_reference_profile(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read models/reference_profile.json and check the keys the drift code relies on.

    Raises ValueError listing every problem, so a wrong file fails at startup, not at
    the first scrape.
    """
    profile = json.loads(Path(path).read_text())
    check_reference_profile(profile)
    return profile


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


# --- live performance ----------------------------------------------------------------


@dataclass(frozen=True)
class LivePerformance:
    """Rolling performance on labelled predictions; precision is None without positives."""

    labels: int
    roc_auc: float
    recall: float
    precision: float | None
    brier: float


def roc_auc(labels: Sequence[int], probabilities: Sequence[float]) -> float:
    """ROC-AUC via the Mann-Whitney rank statistic (ties count half), no sklearn needed."""
    y = np.asarray(labels, dtype=int)
    ranks = stats.rankdata(np.asarray(probabilities, dtype=float))
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("ROC-AUC needs both classes")
    rank_sum = float(ranks[y == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def live_performance(
    labelled: Sequence[LabelledPrediction], decision_threshold: float
) -> LivePerformance | None:
    """Performance at 'positive when probability >= decision_threshold' (as in training).

    Returns None unless both classes are present (ROC-AUC and recall are undefined).
    """
    labels = [p.label for p in labelled]
    if not labelled or 0 not in labels or 1 not in labels:
        return None
    probabilities = np.array([p.probability for p in labelled], dtype=float)
    y = np.array(labels, dtype=int)
    predicted = probabilities >= decision_threshold
    true_positives = int(np.sum(predicted & (y == 1)))
    predicted_positives = int(predicted.sum())
    return LivePerformance(
        labels=len(labelled),
        roc_auc=roc_auc(labels, probabilities.tolist()),
        recall=true_positives / int(y.sum()),
        precision=true_positives / predicted_positives if predicted_positives else None,
        brier=float(np.mean((probabilities - y) ** 2)),
    )


# --- Prometheus collector ------------------------------------------------------------


def drift_metric_families(report: DriftReport, *, min_records: int) -> list[GaugeMetricFamily]:
    """Gauges of one drift report; only the window size below ``min_records`` records."""
    window = GaugeMetricFamily("stroke_drift_window_records", "Records in the live drift window")
    window.add_metric([], report.window_records)
    if report.window_records < min_records:
        return [window]
    psi = GaugeMetricFamily(
        "stroke_feature_psi", "PSI of the live window vs the reference profile", labels=["feature"]
    )
    pvalue = GaugeMetricFamily(
        "stroke_feature_drift_pvalue",
        "p-value of the live window vs the reference (KS numeric, chi-square categorical)",
        labels=["feature", "test"],
    )
    missing = GaugeMetricFamily(
        "stroke_feature_missing_rate",
        "Share of missing values in the live window",
        labels=["feature"],
    )
    unseen = GaugeMetricFamily(
        "stroke_feature_unseen_category_rate",
        "Share of categorical values absent from the reference profile",
        labels=["feature"],
    )
    for name, drift in report.features.items():
        missing.add_metric([name], drift.missing_rate)
        if drift.psi is not None:
            psi.add_metric([name], drift.psi)
        if drift.pvalue is not None:
            pvalue.add_metric([name, drift.test], drift.pvalue)
        if drift.unseen_category_rate is not None:
            unseen.add_metric([name], drift.unseen_category_rate)
    families = [window, psi, pvalue, missing, unseen]
    if report.drift_score is not None:
        score = GaugeMetricFamily(
            "stroke_drift_score", "Overall drift score (max PSI over features)"
        )
        score.add_metric([], report.drift_score)
        families.append(score)
    return families


def performance_metric_families(
    labelled: Sequence[LabelledPrediction], *, decision_threshold: float, min_labels: int
) -> list[GaugeMetricFamily]:
    """stroke_live_labels, plus ROC-AUC/recall/precision/Brier once enough labels exist."""
    count = GaugeMetricFamily(
        "stroke_live_labels", "Labelled predictions in the performance window"
    )
    count.add_metric([], len(labelled))
    families = [count]
    performance = (
        live_performance(labelled, decision_threshold) if len(labelled) >= min_labels else None
    )
    if performance is None:
        return families
    values = {
        "stroke_live_roc_auc": ("Rolling ROC-AUC from feedback", performance.roc_auc),
        "stroke_live_recall": ("Rolling recall at the decision threshold", performance.recall),
        "stroke_live_precision": (
            "Rolling precision at the decision threshold",
            performance.precision,
        ),
        "stroke_live_brier": ("Rolling Brier score from feedback", performance.brier),
    }
    for name, (documentation, value) in values.items():
        if value is not None:
            gauge = GaugeMetricFamily(name, documentation)
            gauge.add_metric([], value)
            families.append(gauge)
    return families


COLLECTED_NAMES = (
    "stroke_drift_window_records",
    "stroke_feature_psi",
    "stroke_feature_drift_pvalue",
    "stroke_feature_missing_rate",
    "stroke_feature_unseen_category_rate",
    "stroke_drift_score",
    "stroke_live_labels",
    "stroke_live_roc_auc",
    "stroke_live_recall",
    "stroke_live_precision",
    "stroke_live_brier",
)


class LiveMetricsCollector(Collector):
    """Prometheus collector reading the shared prediction log at scrape time.

    Results are cached per process for ``settings.cache_seconds``. A store error is
    logged (without any feature value) and the scrape goes on without these metrics.
    """

    def __init__(
        self,
        store: PredictionLog,
        reference_profile: Mapping[str, Any],
        *,
        decision_threshold: float,
        settings: MonitoringSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.reference_profile = reference_profile
        self.decision_threshold = decision_threshold
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: list[GaugeMetricFamily] = []
        self._cached_at: float | None = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Lets the registry check name clashes without querying the store.
        return [GaugeMetricFamily(name, name) for name in COLLECTED_NAMES]

    def compute(self) -> list[GaugeMetricFamily]:
        """Read both windows and build every family (no caching)."""
        records = self.store.recent_features(self.settings.drift_window)
        report = compute_drift(self.reference_profile, records, epsilon=self.settings.psi_epsilon)
        labelled = self.store.labelled_window(self.settings.performance_window)
        return drift_metric_families(
            report, min_records=self.settings.min_drift_records
        ) + performance_metric_families(
            labelled,
            decision_threshold=self.decision_threshold,
            min_labels=self.settings.min_labels,
        )

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            now = self.clock()
            fresh = (
                self._cached_at is not None and now - self._cached_at < self.settings.cache_seconds
            )
            if not fresh:
                try:
                    self._cached = self.compute()
                except sqlite3.Error as error:
                    logger.warning(
                        "live monitoring: cannot read the prediction log (%s)", type(error).__name__
                    )
                    self._cached = []
                self._cached_at = now
            return list(self._cached)


# --- feedback endpoint ---------------------------------------------------------------


def error_response(status: int, error: str, details: list[dict[str, str]]) -> tuple[Response, int]:
    """The project's error body: {"error": summary, "details": [{"field", "message"}]}."""
    return jsonify({"error": error, "details": details}), status


def validate_feedback_body(body: Any) -> list[dict[str, str]]:
    """Every problem of a parsed /feedback body (empty list when valid)."""
    if not isinstance(body, dict):
        return [{"field": "(body)", "message": f"must be a JSON object, got {type(body).__name__}"}]
    problems = [
        {
            "field": str(key)[:60],
            "message": "unknown field; allowed fields are prediction_id, stroke",
        }
        for key in body
        if key not in FEEDBACK_FIELDS
    ]
    prediction_id = body.get("prediction_id")
    if "prediction_id" not in body:
        problems.append({"field": "prediction_id", "message": "is required"})
    elif not isinstance(prediction_id, str) or not prediction_id.strip():
        problems.append({"field": "prediction_id", "message": "must be a non-empty string"})
    elif len(prediction_id) > MAX_PREDICTION_ID_LENGTH:
        problems.append(
            {
                "field": "prediction_id",
                "message": f"is longer than {MAX_PREDICTION_ID_LENGTH} characters",
            }
        )
    label = body.get("stroke")
    if "stroke" not in body:
        problems.append({"field": "stroke", "message": "is required; expected 0 or 1"})
    elif isinstance(label, bool) or not isinstance(label, int) or label not in (0, 1):
        problems.append(
            {"field": "stroke", "message": f"must be 0 or 1, got {json.dumps(label)[:40]}"}
        )
    return problems


# Large /predict batches are logged just after their response is sent (app/factory.py),
# so an id can be unknown for a fraction of a second after the client has it.
FEEDBACK_GRACE_SECONDS = 0.5
FEEDBACK_RETRY_SECONDS = 0.02


def record_feedback_with_grace(
    store: PredictionLog,
    prediction_id: str,
    label: Any,
    *,
    grace_seconds: float = FEEDBACK_GRACE_SECONDS,
) -> int:
    """store.record_feedback, retrying an unknown id for up to grace_seconds before failing."""
    deadline = time.monotonic() + grace_seconds
    while True:
        try:
            return store.record_feedback(prediction_id, label)
        except UnknownPredictionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(FEEDBACK_RETRY_SECONDS)


def create_feedback_blueprint(store: PredictionLog, feedback_counter: Counter) -> Blueprint:
    """Blueprint with ``POST /feedback {"prediction_id": str, "stroke": 0|1}``.

    201 with the stored label; 415 unless the content type is application/json; 400 for
    unparsable JSON or a body that fails validation (all problems listed, as /predict
    does); 404 for an unknown id; 409 for a second feedback on one id; 503 if the store
    is unavailable. Errors are ``{"error": ..., "details": [{"field", "message"}]}``.
    Every answer increments ``stroke_feedback_total{outcome="accepted"|"rejected"}``.
    """
    blueprint = Blueprint("stroke_feedback", __name__)

    def rejected(status: int, error: str, details: list[dict[str, str]]) -> tuple[Response, int]:
        feedback_counter.labels(outcome="rejected").inc()
        return error_response(status, error, details)

    @blueprint.post("/feedback")
    def feedback() -> tuple[Response, int]:
        if request.mimetype != JSON_MIMETYPE:
            given = (request.content_type or "none")[:80]
            return rejected(
                415,
                "unsupported content type",
                [{"field": "Content-Type", "message": f"must be application/json, got {given!r}"}],
            )
        body = request.get_json(silent=True)
        if body is None:
            return rejected(
                400, "malformed JSON", [{"field": "(body)", "message": "is not valid JSON"}]
            )
        problems = validate_feedback_body(body)
        if problems:
            return rejected(400, "invalid feedback", problems)
        prediction_id = body["prediction_id"]
        try:
            label = record_feedback_with_grace(store, prediction_id, body["stroke"])
        except UnknownPredictionError:
            return rejected(
                404,
                "unknown prediction",
                [{"field": "prediction_id", "message": "no prediction with this id is stored"}],
            )
        except DuplicateFeedbackError:
            return rejected(
                409,
                "duplicate feedback",
                [
                    {
                        "field": "prediction_id",
                        "message": "feedback for this prediction was already recorded",
                    }
                ],
            )
        except InvalidLabelError as error:  # validated above; kept for defence in depth
            return rejected(400, "invalid feedback", [{"field": "stroke", "message": str(error)}])
        except sqlite3.Error as error:
            logger.warning("feedback: prediction log unavailable (%s)", type(error).__name__)
            return rejected(
                503,
                "feedback store unavailable",
                [{"field": "(store)", "message": "try again later"}],
            )
        feedback_counter.labels(outcome="accepted").inc()
        return jsonify({"prediction_id": prediction_id, "stroke": label, "status": "recorded"}), 201

    return blueprint


# --- the app's entry point -----------------------------------------------------------


class LiveMonitor:
    """What install_monitoring returns: the store, the collector and the scoring callback.

    The instance is callable: ``monitor(records, probabilities, decisions, ids)`` is
    ``monitor.on_predictions(...)``, so it can be appended to the app's
    ``PREDICTION_CALLBACKS`` as it is.
    """

    def __init__(
        self,
        store: PredictionLog,
        collector: LiveMetricsCollector,
        feedback_counter: Counter,
        *,
        model_version: str = "unknown",
    ) -> None:
        self.store = store
        self.collector = collector
        self.feedback_counter = feedback_counter
        self.model_version = model_version

    def on_predictions(
        self,
        records: Sequence[Mapping[str, Any]],
        probabilities: Sequence[float],
        decisions: Sequence[bool],
        prediction_ids: Sequence[str],
        model_version: str | None = None,
    ) -> bool:
        """Record one request's scored records in one transaction; True if stored.

        Call after scoring with the validated records (the ten fields, bmi may be None);
        ``model_version`` defaults to the one given to install_monitoring. A store
        failure is logged (never with feature values) and returns False instead of
        failing the prediction. Unequal list lengths are a caller bug: ValueError.
        """
        lengths = {len(records), len(probabilities), len(decisions), len(prediction_ids)}
        if len(lengths) != 1:
            raise ValueError(
                "records, probabilities, decisions and prediction_ids differ in length"
            )
        version = model_version or self.model_version
        batch = [
            PredictionRecord(
                prediction_id=prediction_id,
                features={name: record.get(name) for name in FEATURE_NAMES},
                probability=float(probability),
                decision=bool(decision),
                model_version=version,
            )
            for record, probability, decision, prediction_id in zip(
                records, probabilities, decisions, prediction_ids, strict=True
            )
        ]
        try:
            self.store.record_predictions(batch)
        except (sqlite3.Error, PredictionLogError, ValueError, TypeError) as error:
            # ValueError/TypeError: feature values that are not JSON (e.g. infinity).
            logger.warning(
                "live monitoring: %d prediction(s) not recorded (%s)",
                len(batch),
                type(error).__name__,
            )
            return False
        return True

    __call__ = on_predictions


def install_monitoring(
    flask_app: Flask,
    *,
    store_path: str | os.PathLike[str],
    reference_profile: Mapping[str, Any] | str | os.PathLike[str],
    decision_threshold: float,
    settings: MonitoringSettings | None = None,
    registry: CollectorRegistry | None = REGISTRY,
    multiprocess: bool | None = None,
    model_version: str = "unknown",
) -> LiveMonitor:
    """Wire live monitoring into a Flask app; return the monitor (call it after scoring).

    - opens (or creates) the shared prediction log at ``store_path`` (the same path for
      every worker);
    - registers the scrape-time collector in ``registry``: the registry /metrics
      serves (in multiprocess mode, the one holding the MultiProcessCollector);
    - creates ``stroke_feedback_total{outcome}``: in prometheus_client multiprocess mode
      (``multiprocess``; default: PROMETHEUS_MULTIPROC_DIR is set) it is left unregistered
      because the MultiProcessCollector exports it from the shared files, otherwise it
      is registered in ``registry``;
    - mounts POST /feedback and puts the monitor in ``flask_app.extensions["stroke_monitoring"]``.

    ``reference_profile`` may be the loaded dict or the path of reference_profile.json;
    it is checked here so a wrong file fails at startup. ``model_version`` is stored
    with each prediction unless the callback is given one.
    """
    settings = settings or MonitoringSettings()
    if isinstance(reference_profile, Mapping):
        check_reference_profile(reference_profile)
        profile: Mapping[str, Any] = reference_profile
    else:
        profile = load_reference_profile(reference_profile)
    if math.isnan(decision_threshold) or not 0.0 <= decision_threshold <= 1.0:
        raise ValueError(f"decision_threshold must be in [0, 1], got {decision_threshold!r}")
    store = PredictionLog(store_path, retention=settings.retention)
    collector = LiveMetricsCollector(
        store, profile, decision_threshold=decision_threshold, settings=settings
    )
    if multiprocess is None:
        multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    feedback_counter = Counter(
        "stroke_feedback_total",
        "Feedback requests by outcome",
        ["outcome"],
        registry=None if multiprocess else registry,
    )
    for outcome in ("accepted", "rejected"):
        feedback_counter.labels(outcome=outcome)  # export zeros before the first request
    if registry is not None:
        registry.register(collector)
    flask_app.register_blueprint(create_feedback_blueprint(store, feedback_counter))
    monitor = LiveMonitor(store, collector, feedback_counter, model_version=model_version)
    flask_app.extensions["stroke_monitoring"] = monitor
    return monitor
