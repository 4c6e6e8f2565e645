"""Live monitoring in the service: wiring the prediction log, its exporter and /feedback.

A default extension of create_app (app/factory.py DEFAULT_EXTENSIONS). With a model
loaded, ``init_monitoring`` opens the shared prediction log -- PostgreSQL when
STROKE_MONITOR_DATABASE_URL is set (every host shares it), else the SQLite file
STROKE_MONITOR_DB (one host) -- and installs:

- the prediction callback that writes every scored record to it
  (app/prediction_writer.py PredictionLogWriter, buffered per worker);
- the scrape-time collector of drift and performance figures of the current model
  version, the same in every worker and replica (app/live_metrics_exporter.py);
- ``POST /feedback`` (app/feedback.py), and the OpenAPI document that describes it.

The computations are pure functions of stroke_risk.monitoring.drift and
stroke_risk.monitoring.live; the modules above read the log and export. The reference
profile is checked against dvc.lock like the model: a missing, stale or edited profile
stops the server with one line, as does a prediction log that cannot be opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry

from app.artifacts import FIX, ArtifactError, display_path, verify_reference_profile
from app.feedback import FeedbackState, install_feedback
from app.live_metrics_exporter import LiveMetricsCollector
from app.openapi import openapi_document
from app.prediction_writer import PredictionLogWriter
from app.service_state import CALLBACKS_KEY, service_state
from app.settings import Settings, SettingsError
from stroke_risk.monitoring.journal import PredictionJournal
from stroke_risk.monitoring.live import check_reference_profile
from stroke_risk.monitoring.log_backend import STORE_ERRORS, open_prediction_log
from stroke_risk.monitoring.prediction_log import Retention

logger = logging.getLogger(__name__)
# Opening the prediction log fails with these; the service then stops with one line.
STORE_OPEN_ERRORS: tuple[type[Exception], ...] = (OSError, *STORE_ERRORS)

MONITOR_KEY = "stroke_monitoring"
# Set by app/gunicorn_conf.py: the app is built in a master that forks its workers.
FORKING_SERVER_VARIABLE = "STROKE_FORKING_SERVER"


@dataclass(frozen=True)
class LiveMonitoring:
    """The parts of live monitoring installed in one app (``app.extensions[MONITOR_KEY]``)."""

    writer: PredictionLogWriter
    collector: LiveMetricsCollector
    feedback: FeedbackState


def retention(settings: Settings) -> Retention:
    return Retention(
        settings.monitor_retention_max_rows, settings.monitor_retention_max_age_seconds
    )


def journal_directory(settings: Settings) -> Path:
    """This host's journal folder: next to the SQLite log's path (also with PostgreSQL)."""
    path = settings.monitor_db_path
    return path.with_name(path.name + ".journal")


def describe_log(settings: Settings) -> str:
    """Where the prediction log is, for messages (a URL never holds a password here)."""
    return settings.monitor_database_url or str(settings.monitor_db_path)


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
) -> LiveMonitoring:
    """Open the log, register the collector in registry, mount /feedback; return the parts.

    The feedback counter is left unregistered in prometheus_client multiprocess mode (the
    MultiProcessCollector exports it from the shared files). flush_seconds > 0 buffers
    small requests' records (PredictionLogWriter); 0 writes each request in its own
    transaction. The retention timer starts in this process when start_retention_timer,
    and in every forked worker regardless.
    """
    check_reference_profile(reference_profile)
    store = open_prediction_log(
        path=settings.monitor_db_path,
        database_url=settings.monitor_database_url,
        retention=retention(settings),
    )
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
    writer = PredictionLogWriter(
        store,
        model_version=model_version,
        reference_profile=reference_profile,
        binned=settings.monitor_store == "binned",
        flush_seconds=flush_seconds,
        journal=(
            PredictionJournal(journal_directory(settings))
            if settings.monitor_journal and flush_seconds > 0
            else None
        ),
    )
    # The feedback counter is registered before the collector, as it always was, so the
    # exposition keeps its order.
    feedback = install_feedback(
        app, writer, settings=settings, registry=registry, multiprocess=multiprocess
    )
    if registry is not None:
        registry.register(collector)
    collector.before_read = writer.flush
    monitoring = LiveMonitoring(writer, collector, feedback)
    app.extensions[MONITOR_KEY] = monitoring
    return monitoring


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
        monitoring = install_monitoring(
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
    except STORE_OPEN_ERRORS as error:
        fix = (
            "check STROKE_MONITOR_DATABASE_URL and the database"
            if settings.monitor_database_url
            else "set STROKE_MONITOR_DB to a writable file"
        )
        raise SettingsError(
            f"cannot open the prediction log {describe_log(settings)} "
            f"({type(error).__name__}: {error}); {fix}"
        ) from None
    # Under gunicorn this runs in the master before it forks the workers: close its
    # connections so no worker inherits an open handle (each opens its own).
    monitoring.writer.store.close()
    app.config[CALLBACKS_KEY].append(monitoring.writer)
    state.openapi = openapi_document(
        settings.max_batch_size, settings.risk_factor_count, feedback=True
    )
    logger.info(
        "live monitoring: prediction log %s (%s values)",
        describe_log(settings),
        settings.monitor_store,
    )
