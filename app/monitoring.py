"""Live monitoring in the service: prediction log, drift and performance gauges, /feedback.

A default extension of create_app (app/factory.py DEFAULT_EXTENSIONS). With a model
loaded, ``init_monitoring``:

- records every scored record in the shared SQLite prediction log (Settings
  monitor_db_path, STROKE_MONITOR_DB) from a prediction callback: small requests' records
  are buffered per worker and written every STROKE_MONITOR_FLUSH_SECONDS (0.05 s) in one
  transaction (a transaction per request costs more than scoring the record), large
  batches in their own transaction after the response; with STROKE_MONITOR_STORE=binned
  only reference-bin indices and categories are kept, never the raw numbers;
- registers a scrape-time collector: drift, live performance (label-based, once enough
  labels of each class exist), calibration, label-free estimated performance and
  multivariate drift, all computed from the current model version's rows only, once for
  the whole service (SharedFigures: a file next to the log, recomputed under a lock by
  one process at a time), so every worker and replica exports the same figures;
- mounts ``POST /feedback``, validated by app.api_models.Feedback, answering with the
  app's own error format.

The computations are pure functions of stroke_risk.monitoring.drift and stroke_risk.monitoring.live;
this module reads the log and exports. The reference profile is checked against dvc.lock
like the model: a missing, stale or edited profile stops the server with one line, as
does a prediction log that cannot be opened.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, request
from flask_limiter import Limiter
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.api_models import parse_feedback
from app.artifacts import FIX, ArtifactError, display_path, verify_reference_profile
from app.auth import current_credential_name
from app.factory import (
    CALLBACKS_KEY,
    DEFERRED_CALLBACK_MIN_RECORDS,
    error_response,
    is_json_request,
    json_response,
    prediction_id_age_seconds,
    service_state,
)
from app.openapi import openapi_document
from app.payload import RequestError, parse_json
from app.settings import Settings, SettingsError
from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.monitoring.live import (
    Figure,
    FigureSettings,
    LiveWindows,
    bin_record,
    check_reference_profile,
    classifier_drift_auc,
    live_figures,
)
from stroke_risk.monitoring.prediction_log import (
    BATCH_TOKEN_LENGTH,
    DuplicateFeedbackError,
    PredictionLog,
    PredictionLogError,
    PredictionRecord,
    Retention,
    UnknownPredictionError,
    Window,
)

logger = logging.getLogger(__name__)

MONITOR_KEY = "stroke_monitoring"
# Large /predict batches are logged just after their response is sent (app/factory.py);
# feedback for an id of such a batch waits for it up to this long (read-only polls).
FEEDBACK_GRACE_SECONDS = 2.0
FEEDBACK_POLL_SECONDS = 0.02
# Set by app/gunicorn_conf.py: the app is built in a master that forks its workers.
FORKING_SERVER_VARIABLE = "STROKE_FORKING_SERVER"
# The multivariate drift classifier is refitted at most this often per process.
MULTIVARIATE_SECONDS = 60.0


def drift_window(settings: Settings) -> Window:
    return Window(settings.monitor_drift_window_records, settings.monitor_drift_window_seconds)


def performance_window(settings: Settings) -> Window:
    return Window(
        settings.monitor_performance_window_records, settings.monitor_performance_window_seconds
    )


def retention(settings: Settings) -> Retention:
    return Retention(
        settings.monitor_retention_max_rows, settings.monitor_retention_max_age_seconds
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


# --- figures shared by every worker and replica ------------------------------------------


class SharedFigures:
    """The service's latest figures in a file next to the prediction log, one per version.

    Whoever scrapes finds the file; when it is older than ``max_age`` seconds, the first
    process to take the file's lock (non-blocking flock) recomputes it and replaces it
    atomically, while the others export the previous figures. So every worker and every
    replica sharing the log export the same numbers, computed once per ``max_age``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def read(self) -> dict[str, Any] | None:
        """Return the stored document ({"computed_at", "figures"}), None if absent or torn."""
        try:
            document = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return document if isinstance(document, dict) else None

    def write(self, computed_at: float, figures: Sequence[Figure]) -> None:
        document = {
            "computed_at": computed_at,
            "figures": [[f.name, [list(pair) for pair in f.labels], f.value] for f in figures],
        }
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(orjson.dumps(document))
        os.replace(temporary, self.path)

    @contextlib.contextmanager
    def lease(self, *, wait: bool) -> Iterator[bool]:
        """Hold the file's lock while inside; yields False when another process holds it
        and not wait. The lock is released if the holder dies, so no lease is ever stuck."""
        with open(self.lock_path, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def stored_figures(document: Mapping[str, Any]) -> list[Figure]:
    return [
        Figure(str(name), float(value), tuple((str(k), str(v)) for k, v in labels))
        for name, labels, value in document.get("figures", [])
    ]


def shared_figures_path(database: Path, model_version: str, kind: str) -> Path:
    """The shared file of one model version's figures, next to the prediction log."""
    return database.with_name(f"{database.name}.{kind}-{model_version}.json")


class BackgroundJob:
    """target(*args) in an OS thread, started at once; also under gevent's monkey-patching,
    where threading.Thread is a greenlet (a second of CPU-bound fitting would then stall
    the worker's event loop) and gevent's own thread pool is the safe way out."""

    def __init__(self, target: Callable[..., None], *args: Any, name: str) -> None:
        self._thread: threading.Thread | None = None
        self._pooled: Any = None
        # Only a process that gevent has already patched uses it (nothing is imported).
        monkey: Any = sys.modules.get("gevent.monkey")
        if monkey is not None and monkey.is_module_patched("threading"):
            self._pooled = sys.modules["gevent"].get_hub().threadpool.spawn(target, *args)
            return
        self._thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._thread.start()

    def running(self) -> bool:
        if self._pooled is not None:
            return not self._pooled.ready()
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float) -> None:
        """Block until the job ends or timeout seconds pass (tests)."""
        if self._pooled is not None:
            self._pooled.wait(timeout)
        elif self._thread is not None:
            self._thread.join(timeout)


class LiveMetricsCollector(Collector):
    """Prometheus collector exporting the whole service's figures, the same in every worker.

    Only rows of ``model_version`` count. The figures (stroke_risk.monitoring.live
    .live_figures of the shared log's windows) live in a SharedFigures file next to the
    log: recomputed by one process at most every ``settings.monitor_cache_seconds`` and
    exported by all, so the answer does not depend on which worker or replica is
    scraped. The drift classifier's AUC has its own shared file, refitted by one process
    in a background thread at most every MULTIVARIATE_SECONDS. A store error is logged
    (without any feature value) and the scrape exports the last stored figures.
    """

    def __init__(
        self,
        store: PredictionLog,
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
        self.figures = SharedFigures(shared_figures_path(store.path, model_version, "figures"))
        self.multivariate = SharedFigures(
            shared_figures_path(store.path, model_version, "multivariate")
        )
        self._lock = threading.Lock()
        self._multivariate_job: BackgroundJob | None = None
        self._multivariate_value: float | None = None
        # Called before the log is read (the monitor's flush), so this worker's own
        # buffered records are counted.
        self.before_read: Callable[[], None] | None = None

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
                    except sqlite3.Error as error:
                        logger.warning(
                            "live monitoring: cannot read the prediction log (%s)",
                            type(error).__name__,
                        )
                    else:
                        self.figures.write(self.clock(), figures)
                        self._refresh_multivariate(figures)
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
            self.multivariate.write(self.clock(), figures)
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


# --- the scoring callback ----------------------------------------------------------------


class LiveMonitor:
    """The prediction callback: logs each request's scored records in one transaction.

    Callable as ``monitor(records, probabilities, decisions, ids)`` (app/factory.py's
    PREDICTION_CALLBACKS); ``defer(ids)`` is called before a large batch's response is
    sent and its logging deferred, so feedback for those ids waits instead of failing.

    With ``flush_seconds`` > 0, requests of fewer than DEFERRED_CALLBACK_MIN_RECORDS
    records are buffered in this process and written by a background thread (a greenlet
    under gevent) every flush_seconds, many requests per transaction; ``flush()`` writes
    the buffer now (the collector and /feedback call it before reading; gunicorn's
    worker_exit hook calls flush_all()). A worker killed with SIGKILL loses at most
    flush_seconds of its log, never a prediction.
    """

    def __init__(
        self,
        store: PredictionLog,
        collector: LiveMetricsCollector,
        feedback_counter: Counter,
        *,
        model_version: str,
        reference_profile: Mapping[str, Any] | None = None,
        binned: bool = False,
        flush_seconds: float = 0.0,
    ) -> None:
        self.store = store
        self.collector = collector
        self.feedback_counter = feedback_counter
        self.model_version = model_version
        self.reference_profile = reference_profile
        self.binned = binned
        self.flush_seconds = flush_seconds
        self._buffer: list[PredictionRecord] = []
        self._buffer_lock = threading.Lock()
        self._flusher_pid: int | None = None
        _MONITORS.add(self)

    def defer(self, prediction_ids: Sequence[str]) -> None:
        """Mark the batch of these ids (sharing their first 16 hex digits) pending."""
        try:
            self.store.mark_pending(prediction_ids[0][:BATCH_TOKEN_LENGTH], FEEDBACK_GRACE_SECONDS)
        except sqlite3.Error as error:
            logger.warning("live monitoring: batch not marked pending (%s)", type(error).__name__)

    def on_predictions(
        self,
        records: Sequence[Mapping[str, Any]],
        probabilities: Sequence[float],
        decisions: Sequence[bool],
        prediction_ids: Sequence[str],
        model_version: str | None = None,
    ) -> bool:
        """Record one request's scored records in one transaction; True if stored.

        A store failure is logged (never with feature values) and returns False instead of
        failing the prediction. Unequal list lengths are a caller bug: ValueError.
        """
        lengths = {len(records), len(probabilities), len(decisions), len(prediction_ids)}
        if len(lengths) != 1:
            raise ValueError(
                "records, probabilities, decisions and prediction_ids differ in length"
            )
        version = model_version or self.model_version
        profile = self.reference_profile
        batch = [
            PredictionRecord(
                prediction_id=prediction_id,
                features=(
                    bin_record(profile, record)
                    if self.binned and profile is not None
                    else {name: record.get(name) for name in FEATURE_NAMES}
                ),
                probability=float(probability),
                decision=bool(decision),
                model_version=version,
            )
            for record, probability, decision, prediction_id in zip(
                records, probabilities, decisions, prediction_ids, strict=True
            )
        ]
        if self.flush_seconds > 0 and len(batch) < DEFERRED_CALLBACK_MIN_RECORDS:
            self._ensure_flusher()
            with self._buffer_lock:
                self._buffer.extend(batch)
            return True
        token = prediction_ids[0][:BATCH_TOKEN_LENGTH] if len(batch) > 1 else None
        return self._store(batch, token)

    __call__ = on_predictions

    def buffered(self) -> int:
        """Return how many records this process holds that are not in the log yet."""
        return len(self._buffer)

    def holds(self, prediction_id: str) -> bool:
        """Return whether this process's buffer holds the prediction (not logged yet)."""
        with self._buffer_lock:
            return any(record.prediction_id == prediction_id for record in self._buffer)

    def flush(self) -> bool:
        """Write this process's buffered records in one transaction; True unless it failed."""
        with self._buffer_lock:
            batch, self._buffer = self._buffer, []
        return self._store(batch, None) if batch else True

    def _ensure_flusher(self) -> None:
        """Start this process's flusher (threads do not survive gunicorn's fork)."""
        if self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()
        reference = weakref.ref(self)
        interval = self.flush_seconds

        def loop() -> None:
            while True:
                time.sleep(interval)
                monitor = reference()
                if monitor is None:
                    return
                monitor.flush()
                del monitor

        threading.Thread(target=loop, name="prediction-log-flush", daemon=True).start()

    def _store(self, batch: list[PredictionRecord], token: str | None) -> bool:
        try:
            self.store.record_predictions(batch, pending_token=token)
        except (sqlite3.Error, PredictionLogError, ValueError, TypeError) as error:
            # ValueError/TypeError: feature values that are not JSON (e.g. infinity).
            logger.warning(
                "live monitoring: %d prediction(s) not recorded (%s)",
                len(batch),
                type(error).__name__,
            )
            return False
        return True


# Every monitor of this process, for flush_all (gunicorn's worker_exit hook).
_MONITORS: weakref.WeakSet[LiveMonitor] = weakref.WeakSet()


def flush_all() -> None:
    """Write the buffered records of every monitor in this process (at worker exit)."""
    for monitor in list(_MONITORS):
        monitor.flush()


# --- POST /feedback ----------------------------------------------------------------------

feedback_blueprint = Blueprint("stroke_feedback", __name__)


def current_monitor() -> LiveMonitor:
    return current_app.extensions[MONITOR_KEY]


def record_feedback(
    monitor: LiveMonitor, prediction_id: str, label: int, labelled_by: str | None = None
) -> int:
    """Record the label; an id that may still be on its way to the log is waited for.

    An unknown id is looked for again after this worker's buffer is written. It is
    waited for (read-only polls, up to FEEDBACK_GRACE_SECONDS) only while it can still
    be in another worker's buffer (issued less than FEEDBACK_GRACE_SECONDS ago, its
    time is in the id) or in a large batch being logged; any other unknown id fails at
    once (one indexed read, no write lock, no sleep), so bogus feedback costs no more
    than a normal request.
    """
    store = monitor.store
    try:
        return store.record_feedback(prediction_id, label, labelled_by=labelled_by)
    except UnknownPredictionError:
        # Only a prediction this worker holds is worth a write now: bogus ids never write.
        if monitor.holds(prediction_id) and monitor.flush():
            try:
                return store.record_feedback(prediction_id, label, labelled_by=labelled_by)
            except UnknownPredictionError:
                pass
        age = prediction_id_age_seconds(prediction_id)
        recent = age is not None and -1.0 <= age <= FEEDBACK_GRACE_SECONDS
        if not (recent and monitor.flush_seconds > 0) and not store.is_pending(prediction_id):
            raise
    deadline = time.monotonic() + FEEDBACK_GRACE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(FEEDBACK_POLL_SECONDS)
        try:
            store.stored_label(prediction_id)
        except UnknownPredictionError:
            age = prediction_id_age_seconds(prediction_id)
            if (age is None or age > FEEDBACK_GRACE_SECONDS) and not store.is_pending(
                prediction_id
            ):
                break
            continue
        return store.record_feedback(prediction_id, label, labelled_by=labelled_by)
    return store.record_feedback(prediction_id, label, labelled_by=labelled_by)


@feedback_blueprint.post("/feedback")
def feedback() -> Response:
    """Record the true outcome of a prediction: 201, or 400/404/409/415/503 (app errors).

    Every answer increments ``stroke_feedback_total{outcome="accepted"|"rejected"}``.
    """
    monitor = current_monitor()
    response = feedback_response(monitor)
    outcome = "accepted" if response.status_code == 201 else "rejected"
    monitor.feedback_counter.labels(outcome=outcome).inc()
    return response


def feedback_response(monitor: LiveMonitor) -> Response:
    if not is_json_request():
        given = (request.content_type or "none")[:80]
        return error_response(
            415,
            "unsupported content type",
            [{"field": "Content-Type", "message": f"must be application/json, got {given!r}"}],
        )
    try:
        document = parse_json(request.get_data(cache=False))
    except RequestError as problem:  # malformed JSON or a key given twice
        return error_response(problem.status, problem.error, problem.details)
    try:
        body = parse_feedback(document)
    except ValueError as problems:
        return error_response(400, "invalid feedback", problems.args[0])
    try:
        label = record_feedback(
            monitor, body.prediction_id, body.stroke, labelled_by=current_credential_name()
        )
    except UnknownPredictionError:
        return error_response(
            404,
            "unknown prediction",
            [{"field": "prediction_id", "message": "no prediction with this id is stored"}],
        )
    except DuplicateFeedbackError:
        return error_response(
            409,
            "duplicate feedback",
            [
                {
                    "field": "prediction_id",
                    "message": "feedback for this prediction was already recorded",
                }
            ],
        )
    except sqlite3.Error as error:
        logger.warning("feedback: prediction log unavailable (%s)", type(error).__name__)
        return error_response(
            503, "feedback store unavailable", [{"field": "(store)", "message": "try again later"}]
        )
    return json_response(
        {"prediction_id": body.prediction_id, "stroke": label, "status": "recorded"}, 201
    )


# --- wiring ------------------------------------------------------------------------------


def limit_feedback(app: Flask, settings: Settings) -> Limiter:
    """Rate-limit POST /feedback per credential (Flask-Limiter; 429 as JSON).

    Counted in settings.rate_limit_storage: memory:// counts in each worker process (the
    service as a whole then admits up to workers x the limit); a redis:// or
    memcached:// storage shared by the workers (and replicas) makes it one limit.
    """
    limiter = Limiter(
        current_credential_name,
        app=app,
        storage_uri=settings.rate_limit_storage,
        default_limits=[],
        headers_enabled=False,
    )
    endpoint = f"{feedback_blueprint.name}.feedback"
    app.view_functions[endpoint] = limiter.limit(settings.feedback_rate_limit)(  # type: ignore[assignment]
        app.view_functions[endpoint]
    )
    return limiter


def install_monitoring(
    app: Flask,
    *,
    settings: Settings,
    reference_profile: Mapping[str, Any],
    decision_threshold: float,
    model_version: str,
    registry: CollectorRegistry | None,
    multiprocess: bool = False,
    start_retention_timer: bool = True,
    flush_seconds: float = 0.0,
) -> LiveMonitor:
    """Open the log, register the collector in registry, mount /feedback; return the monitor.

    The feedback counter is left unregistered in prometheus_client multiprocess mode (the
    MultiProcessCollector exports it from the shared files). flush_seconds > 0 buffers
    small requests' records (LiveMonitor); 0 writes each request in its own transaction.
    The retention timer starts in this process when start_retention_timer, and in every
    forked worker regardless.
    """
    check_reference_profile(reference_profile)
    store = PredictionLog(settings.monitor_db_path, retention=retention(settings))
    store.run_retention_every(
        settings.monitor_retention_interval_seconds, start_now=start_retention_timer
    )
    collector = LiveMetricsCollector(
        store,
        reference_profile,
        decision_threshold=decision_threshold,
        model_version=model_version,
        settings=settings,
    )
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
    app.register_blueprint(feedback_blueprint)
    limit_feedback(app, settings)
    monitor = LiveMonitor(
        store,
        collector,
        feedback_counter,
        model_version=model_version,
        reference_profile=reference_profile,
        binned=settings.monitor_store == "binned",
        flush_seconds=flush_seconds,
    )
    collector.before_read = monitor.flush
    app.extensions[MONITOR_KEY] = monitor
    return monitor


def init_monitoring(app: Flask) -> None:
    """Extension: record predictions, export live drift/performance, serve /feedback.

    Does nothing for an app without a model (create_app(load=False)). Raises
    ArtifactError or SettingsError (one line, the server does not start) when the
    reference profile or the prediction log cannot be used.
    """
    state = service_state(app)
    model = state.model
    if model is None:
        logger.warning("live monitoring is off: no model is loaded")
        return
    settings = state.settings
    profile = verify_reference_profile(settings)
    try:
        check_reference_profile(profile)
    except ValueError as problem:
        shown = display_path(settings.reference_profile_path, settings)
        raise ArtifactError(f"{shown} cannot be used for drift ({problem}); {FIX}") from None
    forking = bool(os.environ.get(FORKING_SERVER_VARIABLE))
    try:
        monitor = install_monitoring(
            app,
            settings=settings,
            reference_profile=profile,
            decision_threshold=model.threshold,
            model_version=model.version,
            registry=state.metrics.exposition,  # the registry /metrics serves
            multiprocess=state.metrics.multiprocess,  # feedback counter via the shared files
            start_retention_timer=not forking,
            flush_seconds=settings.monitor_flush_seconds,
        )
    except (OSError, sqlite3.Error) as error:
        raise SettingsError(
            f"cannot open the prediction log {settings.monitor_db_path} "
            f"({type(error).__name__}: {error}); set STROKE_MONITOR_DB to a writable file"
        ) from None
    # Under gunicorn this runs in the master before it forks the workers: close its
    # connection so no worker inherits an open SQLite handle (each opens its own).
    monitor.store.close()
    app.config[CALLBACKS_KEY].append(monitor)
    state.openapi = openapi_document(
        settings.max_batch_size, settings.risk_factor_count, feedback=True
    )
    logger.info(
        "live monitoring: prediction log %s (%s values)",
        settings.monitor_db_path,
        settings.monitor_store,
    )
