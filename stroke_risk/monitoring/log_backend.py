"""Which prediction log the service uses: one setting selects PostgreSQL, SQLite otherwise.

``PredictionStore`` is the contract both backends keep (the methods the service, the
journal and the tests call); ``open_prediction_log`` picks the backend: a database URL
(STROKE_MONITOR_DATABASE_URL, ``postgresql://ROLE@HOST:PORT/DB``, password from
PGPASSWORD or the pgpass file) selects PostgreSQL, without one the embedded SQLite file
at the log path is used.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from stroke_risk.monitoring.prediction_log import (
    LabelledPrediction,
    PredictionLog,
    PredictionRecord,
    Retention,
    StoreUnavailableError,
    Window,
)
from stroke_risk.monitoring.shared_figures import FigureStore

# What either backend raises when the store cannot be used (callers log and go on).
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, StoreUnavailableError)


class PredictionStore(Protocol):
    """The prediction/feedback store of the service, on either backend."""

    retention: Retention

    def record_predictions(
        self, records: Sequence[PredictionRecord], *, pending_token: str | None = None
    ) -> None: ...

    def replay_predictions(self, records: Sequence[PredictionRecord], created_at: float) -> int: ...

    def mark_pending(self, token: str, seconds: float) -> None: ...

    def is_pending(self, prediction_id: str) -> bool: ...

    def stored_label(self, prediction_id: str) -> int | None: ...

    def record_feedback(
        self, prediction_id: str, label: Any, *, labelled_by: str | None = None
    ) -> int: ...

    def enforce_retention(self) -> int: ...

    def run_retention_every(self, seconds: float, *, start_now: bool = True) -> None: ...

    def stop_retention_timer(self) -> None: ...

    def recent_features(
        self, window: Window, *, model_version: str | None = None
    ) -> list[dict[str, Any]]: ...

    def recent_probabilities(
        self, window: Window, *, model_version: str | None = None
    ) -> list[float]: ...

    def labelled_window(
        self, window: Window, *, model_version: str | None = None
    ) -> list[LabelledPrediction]: ...

    def labelled_by(self, prediction_id: str) -> str | None: ...

    def count(self) -> int: ...

    def stored_ids(self) -> set[str]: ...

    def shared_figures(self, kind: str, model_version: str) -> FigureStore: ...

    def close(self) -> None: ...


def is_database_url(value: str | None) -> bool:
    """Return whether value names a PostgreSQL database (postgresql:// or postgres://)."""
    return bool(value) and str(value).startswith(("postgresql://", "postgres://"))


def open_prediction_log(
    *,
    path: str | os.PathLike[str],
    database_url: str | None = None,
    retention: Retention | None = None,
) -> PredictionStore:
    """The PostgreSQL log at database_url when given, else the SQLite log at path.

    Raises ValueError for a URL that is not PostgreSQL's; the backends raise their own
    errors (sqlite3.Error, StoreUnavailableError) when the log cannot be opened.
    """
    if database_url:
        if not is_database_url(database_url):
            raise ValueError("the prediction log URL must start with postgresql://")
        from stroke_risk.monitoring.postgres_log import PostgresPredictionLog

        return PostgresPredictionLog(database_url, retention=retention)
    return PredictionLog(path, retention=retention)
