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

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from app.openapi import SECURITY_SCHEME, openapi_document
from tests.app.conftest import Server

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
def live_schema(real_server: Server) -> Any:
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            "checks": {"negative_data_rejection": {"expected-statuses": NEGATIVE_STATUSES}},
            "auth": {"openapi": {SECURITY_SCHEME: {"bearer": real_server.extra["token"]}}},
        }
    )
    return schemathesis.openapi.from_url(f"{real_server.url}/openapi.json", config=config)


def test_live_document_is_the_generated_one(real_server: Server) -> None:
    assert requests.get(f"{real_server.url}/openapi.json", timeout=5).json() == DOCUMENT


@pytest.mark.parametrize(
    ("path", "method", "mode"), CASES, ids=[f"{m.upper()} {p} {g.value}" for p, m, g in CASES]
)
def test_operation_conforms_to_the_document(
    live_schema: Any, real_server: Server, path: str, method: str, mode: GenerationMode
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
        case.call_and_validate(base_url=real_server.url, session=session)

    check()
