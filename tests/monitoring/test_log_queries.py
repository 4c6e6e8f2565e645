"""The prediction log's statements: one text for both backends, placeholders matching values.

What the statements return is tested on both real databases (test_log_backends.py); here,
that the two dialects' texts differ only by placeholder and table name, and that every
placeholder has its value in order.
"""

from __future__ import annotations

import itertools

import pytest

from stroke_risk.monitoring import log_queries
from stroke_risk.monitoring.log_queries import Statement
from stroke_risk.monitoring.postgres_log import POSTGRESQL
from stroke_risk.monitoring.prediction_log import SQLITE


def window_statements(dialect: log_queries.Dialect) -> list[Statement]:
    return [
        log_queries.window_rows(
            dialect,
            ["prediction_id", "label"],
            labelled=labelled,
            model_version=version,
            max_records=records,
            created_since=since,
        )
        for labelled, version, records, since in itertools.product(
            (False, True), (None, "v1"), (None, 10), (None, 123.5)
        )
    ]


def every_statement(dialect: log_queries.Dialect) -> list[Statement]:
    return [
        *window_statements(dialect),
        log_queries.column_of_id(dialect, "label", "p1"),
        log_queries.set_label_once(dialect, "p1", 1, 5.0, "clinic"),
        log_queries.labelled_rows(dialect, ["prediction_id", "label"]),
        log_queries.row_count(dialect),
        log_queries.all_ids(dialect),
    ]


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRESQL], ids=["sqlite", "postgresql"])
def test_every_placeholder_has_one_value(dialect: log_queries.Dialect) -> None:
    for statement in every_statement(dialect):
        assert statement.text.count(dialect.placeholder) == len(statement.parameters), statement


def test_the_dialects_differ_only_by_placeholder_and_table() -> None:
    for sqlite, postgresql in zip(
        every_statement(SQLITE), every_statement(POSTGRESQL), strict=True
    ):
        assert sqlite.parameters == postgresql.parameters
        assert (
            sqlite.text.replace("?", "%s").replace(" predictions", " prediction_log.predictions")
            == postgresql.text
        )


def test_window_values_follow_their_conditions_in_order() -> None:
    statement = log_queries.window_rows(
        SQLITE,
        ["probability"],
        labelled=True,
        model_version="v2",
        max_records=7,
        created_since=100.0,
    )
    assert statement == Statement(
        "SELECT probability FROM predictions WHERE model_version = ? AND label IS NOT NULL"
        " AND created_at >= ? ORDER BY seq DESC LIMIT ?",
        ("v2", 100.0, 7),
    )
