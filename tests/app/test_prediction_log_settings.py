"""STROKE_MONITOR_DATABASE_URL: one setting selects the PostgreSQL log; a bad value or an
unreachable database stops the server with one line that never shows a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings, SettingsError
from stroke_risk.ports import free_port
from tests.app.conftest import run_server_expecting_failure


def test_unset_means_the_sqlite_file() -> None:
    assert Settings.from_env({}).monitor_database_url is None
    url = "postgresql://stroke_service@db.internal:5432/predictions"
    assert Settings.from_env({"STROKE_MONITOR_DATABASE_URL": url}).monitor_database_url == url


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("postgresql://svc:hunter2-secret@db/predictions", "must not hold a password"),
        ("mysql://svc@db/predictions", "postgresql://"),
    ],
)
def test_a_bad_url_is_one_line_without_the_value(value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"STROKE_MONITOR_DATABASE_URL": value})
    message = str(refused.value)
    assert "STROKE_MONITOR_DATABASE_URL" in message and reason in message
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.integration  # starts gunicorn, expected to refuse
def test_an_unreachable_database_stops_the_server_with_one_line(tmp_path: Path) -> None:
    url = f"postgresql://stroke_service@127.0.0.1:{free_port()}/predictions"
    result = run_server_expecting_failure(tmp_path, STROKE_MONITOR_DATABASE_URL=url)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "cannot open the prediction log" in errors[0]
    assert "STROKE_MONITOR_DATABASE_URL" in errors[0] and "127.0.0.1" in errors[0]
    assert "Traceback" not in result.stderr
