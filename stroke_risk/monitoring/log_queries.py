"""The prediction log's read and label statements, written once for SQLite and PostgreSQL.

Both backends keep the same columns; their statements differ only in the driver's parameter
placeholder (sqlite3's ``?``, psycopg's ``%s``) and in the name of the predictions table
(PostgreSQL's is qualified by its schema, so a statement does not depend on the connection's
search_path: the service sets one, `make collect-labels` does not). A ``Dialect`` holds those
two; each function returns a statement's text with its parameters and runs nothing, so the
backends differ only in how they execute it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Dialect:
    """How one backend writes a statement: its placeholder and its predictions table."""

    placeholder: str
    predictions_table: str


class Statement(NamedTuple):
    """A statement's text and the values of its placeholders, in order."""

    text: str
    parameters: tuple[Any, ...] = ()


def window_rows(
    dialect: Dialect,
    columns: Sequence[str],
    *,
    labelled: bool,
    model_version: str | None,
    max_records: int | None,
    created_since: float | None,
) -> Statement:
    """The columns of the newest rows, newest first (by insertion, ``seq``).

    Only labelled rows if labelled, only one model version's if given, only rows created at
    or after created_since if given, at most max_records rows if given.
    """
    mark = dialect.placeholder
    conditions: list[str] = []
    parameters: list[Any] = []
    if model_version is not None:
        conditions.append(f"model_version = {mark}")
        parameters.append(model_version)
    if labelled:
        conditions.append("label IS NOT NULL")
    if created_since is not None:
        conditions.append(f"created_at >= {mark}")
        parameters.append(created_since)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    limit = ""
    if max_records is not None:
        limit = f" LIMIT {mark}"
        parameters.append(int(max_records))
    return Statement(
        f"SELECT {', '.join(columns)} FROM {dialect.predictions_table}{where}"
        f" ORDER BY seq DESC{limit}",
        tuple(parameters),
    )


def column_of_id(dialect: Dialect, column: str, prediction_id: str) -> Statement:
    """One column of the row with this prediction id (no row: the id is not stored)."""
    return Statement(
        f"SELECT {column} FROM {dialect.predictions_table}"
        f" WHERE prediction_id = {dialect.placeholder}",
        (prediction_id,),
    )


def set_label_once(
    dialect: Dialect, prediction_id: str, label: int, labelled_at: float, labelled_by: str | None
) -> Statement:
    """Label the prediction unless it already has a label (its row count says which)."""
    mark = dialect.placeholder
    return Statement(
        f"UPDATE {dialect.predictions_table}"
        f" SET label = {mark}, labelled_at = {mark}, labelled_by = {mark}"
        f" WHERE prediction_id = {mark} AND label IS NULL",
        (label, labelled_at, labelled_by, prediction_id),
    )


def labelled_rows(dialect: Dialect, columns: Sequence[str]) -> Statement:
    """The columns of every labelled row, oldest first (the outcome export)."""
    return Statement(
        f"SELECT {', '.join(columns)} FROM {dialect.predictions_table}"
        " WHERE label IS NOT NULL ORDER BY seq"
    )


def row_count(dialect: Dialect) -> Statement:
    """How many predictions are stored."""
    return Statement(f"SELECT COUNT(*) FROM {dialect.predictions_table}")


def all_ids(dialect: Dialect) -> Statement:
    """Every stored prediction id."""
    return Statement(f"SELECT prediction_id FROM {dialect.predictions_table}")
