"""The labelled predictions of the prediction log on PostgreSQL, for `make collect-labels`.

Apart from collect.py so the pipeline stages that read the outcome set do not depend on the
PostgreSQL backend's code.
"""

from __future__ import annotations

import pandas as pd

from stroke_risk.monitoring import log_queries
from stroke_risk.monitoring.postgres_log import POSTGRESQL, connect, describe_url
from stroke_risk.updating.collect import COLUMNS, empty_outcomes


def read_labelled_predictions_from_database(database_url: str) -> pd.DataFrame:
    """Every labelled row of the prediction log on PostgreSQL (the service role may read it)."""
    statement = log_queries.labelled_rows(POSTGRESQL, COLUMNS)
    with connect(database_url) as connection:
        rows = connection.execute(statement.text).fetchall()
    if not rows:
        return empty_outcomes()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({"decision": int, "label": int, "probability": float})


def describe_source(database_url: str) -> str:
    """The provenance's `source` for this log (no password, even if the URL had one)."""
    return f"prediction log on PostgreSQL {describe_url(database_url)}"
