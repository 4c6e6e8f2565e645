"""Fixtures of the clinician page tests: apps with the page extension, a real server.

The page is a default extension of create_app, so the apps here are the full service
(page and live monitoring), with the monitoring prediction log in a temporary directory.
Apps without a model (``load=False``) get the page alone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.credentials import add_credential, parse_scopes
from app.factory import create_app
from app.page import init_page
from app.settings import Settings
from tests.app.conftest import RECORD, Server, server_env, start_server
from tests.conftest import REPO_ROOT

# A patient above the threshold and one below it (the repository model decides which).
HIGH_RISK_RECORD: dict[str, Any] = dict(RECORD)
# Built on the schema's example, so a field added to the schema is present here too.
LOW_RISK_RECORD: dict[str, Any] = {
    **RECORD,
    "gender": "Female",
    "age": 34.0,
    "hypertension": 0,
    "heart_disease": 0,
    "ever_married": "Yes",
    "work_type": "Govt_job",
    "Residence_type": "Rural",
    "avg_glucose_level": 88.5,
    "bmi": None,
    "smoking_status": "never smoked",
}
EVALUATION: dict[str, Any] = {
    "threshold": {
        "value": 0.08,
        "policy": "min_recall",
        "target_recall": 0.8,
        "cv_recall": 0.81,
        "cv_specificity": 0.7,
        "cv_precision": 0.13,
    },
    "test": {
        "recall": {"value": 0.78, "ci_low": 0.66, "ci_high": 0.89},
        "specificity": {"value": 0.73, "ci_low": 0.7, "ci_high": 0.76},
        "precision": {"value": 0.14, "ci_low": 0.11, "ci_high": 0.16},
    },
}


def form_values(record: dict[str, Any]) -> dict[str, str]:
    """Return a record as the strings a browser submits (None -> empty)."""
    return {name: "" if value is None else str(value) for name, value in record.items()}


CSRF_FIELD_PATTERN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def page_csrf_token(client: FlaskClient) -> str:
    """Return the CSRF token the page gives this client's session (GET /)."""
    found = CSRF_FIELD_PATTERN.search(client.get("/").get_data(as_text=True))
    assert found is not None, "the page carries its session's CSRF token"
    return found.group(1)


def submit(client: FlaskClient, data: dict[str, str], **kwargs: Any) -> Any:
    """POST the form as the page's own browser does: with its session's CSRF token."""
    return client.post("/", data={**data, "csrf_token": page_csrf_token(client)}, **kwargs)


@pytest.fixture(scope="session")
def page_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """The default service, serving the repository's model and evaluation report."""
    log = tmp_path_factory.mktemp("page-app") / "predictions.sqlite"
    app = create_app(Settings().replace(monitor_db_path=log))
    app.testing = True
    return app


@pytest.fixture
def page_client(page_app: Flask) -> FlaskClient:
    return page_app.test_client()


def bare_project(root: Path, evaluation: Any = None) -> Settings:
    """Settings of an empty project directory, optionally with reports/evaluation.json."""
    if evaluation is not None:
        (root / "reports").mkdir(parents=True, exist_ok=True)
        text = evaluation if isinstance(evaluation, str) else json.dumps(evaluation)
        (root / "reports" / "evaluation.json").write_text(text)
    return Settings.for_project(root)


@pytest.fixture
def unloaded_client(tmp_path: Path) -> FlaskClient:
    """A page whose service has no model yet and whose project has EVALUATION."""
    settings = bare_project(tmp_path, EVALUATION)
    return create_app(settings, load=False, extensions=[init_page]).test_client()


# The page server's credentials: a clinician may score; a labelling system may not sign in.
PAGE_CREDENTIALS = {"dr-grey": "predict", "lab-feed": "feedback"}


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """gunicorn serving the repository's model with credentials: the page needs a sign-in.

    server.extra["tokens"] maps each PAGE_CREDENTIALS name to its token."""
    log_dir = tmp_path_factory.mktemp("page-server")
    credentials = log_dir / "credentials"
    tokens = {
        name: add_credential(credentials, name, parse_scopes(scopes))
        for name, scopes in PAGE_CREDENTIALS.items()
    }
    env = server_env(TMPDIR=str(log_dir), STROKE_CREDENTIALS_FILE=str(credentials))
    server = start_server(log_dir, env)
    server.extra["tokens"] = tokens
    try:
        yield server
    finally:
        server.stop()


def artifact_dir() -> Path | None:
    """Where to copy screenshots: STROKE_TEST_ARTIFACTS=1 -> test-artifacts/ (gitignored).

    Any other non-empty value is taken as a directory (relative to the repository root).
    """

    value = os.environ.get("STROKE_TEST_ARTIFACTS", "").strip()
    if not value:
        return None
    if value.lower() in {"1", "true", "yes", "on"}:
        return REPO_ROOT / "test-artifacts"
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path
