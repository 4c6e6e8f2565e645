"""Property-based tests generated from the live /openapi.json (schemathesis, under gunicorn).

For every operation schemathesis generates valid requests (which must be answered 2xx
and match the documented response) and invalid ones (which must be rejected with a
documented 4xx), and runs all of its response checks on each.

The operations are driven through ``operation.as_strategy`` with hypothesis directly:
schemathesis' lazy pytest loader (``from_fixture``) does not work with pytest 9.

The server requires credentials: schemathesis sends the valid token for the document's
bearer scheme, and its own invalid ones to check that each secured operation refuses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from app.credentials import SCOPES, add_credential
from app.openapi import SECURITY_SCHEME, openapi_document
from tests.app.conftest import Server, server_env, start_server

pytestmark = pytest.mark.e2e

# The real server: default settings, a model, so live monitoring serves /feedback too.
DOCUMENT = openapi_document(1000, 3, feedback=True)
# Negative cases need something to break: only operations with a request body have any.
CASES = [
    (path, method, mode)
    for path, item in DOCUMENT["paths"].items()
    for method, spec in item.items()
    for mode in (
        [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        if "requestBody" in spec
        else [GenerationMode.POSITIVE]
    )
]


# Invalid requests must get one of these (schemathesis' defaults plus 413, the documented
# answer to a batch over maxItems or a body over the size limit).
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422"]


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """gunicorn serving the repository's model with one credential of every scope."""
    log_dir = tmp_path_factory.mktemp("openapi-server")
    credentials = log_dir / "credentials"
    token = add_credential(credentials, "schemathesis", frozenset(SCOPES))
    env = server_env(TMPDIR=str(log_dir), STROKE_CREDENTIALS_FILE=str(credentials))
    server = start_server(log_dir, env)
    server.extra["token"] = token
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def live_schema(secured_server: Server) -> Any:
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            "checks": {"negative_data_rejection": {"expected-statuses": NEGATIVE_STATUSES}},
            "auth": {"openapi": {SECURITY_SCHEME: {"bearer": secured_server.extra["token"]}}},
        }
    )
    return schemathesis.openapi.from_url(f"{secured_server.url}/openapi.json", config=config)


def test_live_document_is_the_generated_one(secured_server: Server) -> None:
    assert requests.get(f"{secured_server.url}/openapi.json", timeout=5).json() == DOCUMENT


@pytest.mark.parametrize(
    ("path", "method", "mode"), CASES, ids=[f"{m.upper()} {p} {g.value}" for p, m, g in CASES]
)
def test_operation_conforms_to_the_document(
    live_schema: Any, secured_server: Server, path: str, method: str, mode: GenerationMode
) -> None:
    operation = live_schema[path][method.upper()]
    session = requests.Session()
    examples = 80 if path == "/predict" else 25 if path == "/feedback" else 15

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,  # no example store in the repository
    )
    def check(case: Any) -> None:
        case.call_and_validate(base_url=secured_server.url, session=session)

    check()
