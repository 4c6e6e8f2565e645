"""What the routes and extensions of an app share: its ServiceState and prediction callbacks.

create_app (app/factory.py) stores a ServiceState under ``app.extensions[STATE_KEY]``
and the prediction callbacks under ``app.config[CALLBACKS_KEY]``; extensions
(app/page.py, app/monitoring.py) read them here, so none of them imports the factory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask

from app.metrics import ServiceMetrics
from app.model import LoadedModel
from app.settings import Settings

STATE_KEY = "stroke_risk"
CALLBACKS_KEY = "PREDICTION_CALLBACKS"
# Batches at least this large run the prediction callbacks after the response is sent.
DEFERRED_CALLBACK_MIN_RECORDS = 100

PredictionCallback = Callable[[list[dict[str, Any]], list[float], list[bool], list[str]], None]


@dataclass
class ServiceState:
    """What the endpoints share: settings, the loaded model (None = not ready), metrics."""

    settings: Settings
    model: LoadedModel | None
    metrics: ServiceMetrics
    openapi: dict[str, Any]
    route_templates: frozenset[str] = frozenset()


def service_state(app: Flask) -> ServiceState:
    """Return the ServiceState of an app built by create_app."""
    return app.extensions[STATE_KEY]
