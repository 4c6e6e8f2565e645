"""Live monitoring in the service: prediction log, drift and performance gauges, /feedback.

A default extension of create_app (app/factory.py DEFAULT_EXTENSIONS). With a model
loaded, ``init_monitoring`` wires stroke_risk.live_monitoring into the app:

- every scored record goes to the shared SQLite prediction log at STROKE_MONITOR_DB
  (default ``var/monitoring/predictions.sqlite`` under the project dir, git-ignored), one
  transaction per request, from a prediction callback;
- /metrics gains the scrape-time drift and live-performance gauges of docs/CONTRACTS.md,
  computed by whichever worker answers from the same log, so all workers report the same
  window;
- ``POST /feedback {"prediction_id", "stroke"}`` records outcomes, and the OpenAPI
  document describes it.

Drift is measured against models/reference_profile.json, which the featurize stage
writes. It is checked against dvc.lock like the model: a missing, stale or edited profile
stops the server with one line, as does a prediction log that cannot be opened. Windows,
minimum counts and retention come from the STROKE_MONITOR_* variables
(monitoring/README.md).
"""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask

from app.artifacts import FIX, ArtifactError, display_path, verify_reference_profile
from app.factory import CALLBACKS_KEY, service_state
from app.openapi import openapi_document
from app.settings import SettingsError
from stroke_risk.live_monitoring import (
    MonitoringSettings,
    check_reference_profile,
    install_monitoring,
)

logger = logging.getLogger(__name__)


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
    try:
        monitoring_settings = MonitoringSettings.from_environ()
    except ValueError as problem:
        raise SettingsError(str(problem)) from None
    try:
        monitor = install_monitoring(
            app,
            store_path=settings.monitor_db_path,
            reference_profile=profile,
            decision_threshold=model.threshold,
            settings=monitoring_settings,
            registry=state.metrics.exposition,  # the registry /metrics serves
            multiprocess=state.metrics.multiprocess,  # feedback counter via the shared files
            model_version=model.version,
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
    logger.info("live monitoring: prediction log %s", settings.monitor_db_path)
