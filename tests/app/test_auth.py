"""Authentication and scopes (app/auth.py, app/credentials.py), in-process.

Credentials are made the documented way (app.credentials.add_credential, what
`python -m app.credentials add` calls); every protected endpoint is tried without a
credential, with an unknown one, with one lacking the scope and with the right one.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from flask_limiter import Limiter

from app.auth import (
    ENDPOINT_SCOPES,
    AuthState,
    auth_state,
    bind_hosts,
    check_auth_mode,
    csrf_token,
    read_session,
    session_cookie,
)
from app.credentials import (
    CredentialError,
    CredentialStore,
    add_credential,
    main,
    parse_credentials,
    parse_scopes,
    read_credentials,
    remove_credential,
    token_digest,
)
from app.factory import ServiceStartError, create_app
from app.model import LoadedModel
from app.monitoring import MONITOR_KEY
from app.settings import Settings, SettingsError
from tests.app.conftest import RECORD
from tests.page.conftest import HIGH_RISK_RECORD, form_values, page_csrf_token

SCOPE_SETS = {
    "scorer": "predict",
    "labeller": "feedback",
    "scraper": "metrics",
    "everything": "predict,feedback,metrics",
}


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    """A credentials file with one credential per scope set; name -> token."""
    path = tmp_path / "credentials"
    return {name: add_credential(path, name, parse_scopes(s)) for name, s in SCOPE_SETS.items()}


@pytest.fixture
def settings(logreg_settings: Settings, tmp_path: Path, tokens: dict[str, str]) -> Settings:
    return logreg_settings.replace(
        monitor_db_path=tmp_path / "log" / "predictions.sqlite",
        credentials_file=tmp_path / "credentials",
        feedback_rate_limit="3/minute",
    )


@pytest.fixture
def app(settings: Settings, logreg_model: LoadedModel) -> Flask:
    return create_app(settings, model=logreg_model)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the credentials file ----------------------------------------------------------------


def test_a_credential_is_stored_as_its_hash_only_in_a_private_file(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    path = tmp_path / "credentials"
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for name, token in tokens.items():
        assert token not in text
        assert f"{name}:" in text and token_digest(token) in text
    store = CredentialStore(read_credentials(path))
    scorer = store.authenticate(tokens["scorer"])
    assert scorer is not None and scorer.name == "scorer" and scorer.scopes == {"predict"}
    assert store.authenticate(tokens["scorer"] + "x") is None
    remove_credential(path, "scorer")
    assert CredentialStore(read_credentials(path)).authenticate(tokens["scorer"]) is None


def test_the_command_prints_the_token_once_and_lists_no_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "creds"
    assert main(["--file", str(path), "add", "ward-7", "--scopes", "predict,feedback"]) == 0
    token = capsys.readouterr().out.strip()
    assert CredentialStore(read_credentials(path)).authenticate(token) is not None
    assert main(["--file", str(path), "list"]) == 0
    listed = capsys.readouterr().out
    assert listed == "ward-7\tfeedback,predict\n" and token not in listed
    assert main(["--file", str(path), "add", "x", "--scopes", "admin"]) == 1
    assert "unknown scope admin" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("alice:predict", "line 2: expected name:scopes:sha256"),
        ("al ice:predict:sha256:" + "0" * 64, "line 2: name must be"),
        ("alice:predict:sha256:" + "G" * 64, "line 2: the hash must be 64"),
        ("alice:admin:sha256:" + "0" * 64, "line 2: unknown scope admin"),
    ],
)
def test_a_malformed_credentials_line_is_named(line: str, expected: str) -> None:
    with pytest.raises(CredentialError, match=expected):
        parse_credentials(f"# comment\n{line}\n", "creds")


def test_a_bad_credentials_file_stops_the_app_with_one_line(
    settings: Settings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.write_text("alice:predict\n")
    with pytest.raises(ServiceStartError, match="STROKE_CREDENTIALS_FILE: .*line 1"):
        create_app(settings.replace(credentials_file=broken), load=False)


# --- when the service may run open -------------------------------------------------------


def test_beyond_loopback_the_service_needs_credentials_or_an_explicit_open_mode() -> None:
    bare = Settings()
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        with pytest.raises(SettingsError, match=f"bound to {host} with no credentials"):
            check_auth_mode(bare, [host])
    for host in ("127.0.0.1", "::1", "localhost", "unix:"):
        assert check_auth_mode(bare, [host])[0] == "open"
    assert check_auth_mode(bare.replace(auth="open"), ["0.0.0.0"])[0] == "open"
    with_file = bare.replace(credentials_file=Path("/x"))
    assert check_auth_mode(with_file, ["0.0.0.0"])[0] == "tokens"
    assert bind_hosts(["0.0.0.0:8000", "[::1]:80", "unix:/tmp/s"]) == ["0.0.0.0", "::1", "unix:"]


def test_open_mode_says_so_in_version(logreg_settings: Settings, logreg_model: LoadedModel) -> None:
    client = create_app(
        logreg_settings.replace(auth="open", host="0.0.0.0"), model=logreg_model
    ).test_client()
    auth = client.get("/version").get_json()["auth"]
    assert auth["mode"] == "open" and "STROKE_AUTH=open" in auth["reason"]
    assert client.post("/predict", json=RECORD).status_code == 200


# --- scopes ------------------------------------------------------------------------------

PROTECTED = [
    ("POST", "/predict", "predict"),
    ("POST", "/feedback", "feedback"),
    ("GET", "/metrics", "metrics"),
]


def test_the_scope_table_covers_the_protected_routes(app: Flask) -> None:
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    assert set(ENDPOINT_SCOPES) <= routes
    assert {path for _, path, _ in PROTECTED} | {"/version"} == set(ENDPOINT_SCOPES)


@pytest.mark.parametrize(("method", "path", "scope"), PROTECTED)
def test_each_protected_endpoint_names_what_is_missing(
    client: FlaskClient, tokens: dict[str, str], method: str, path: str, scope: str
) -> None:
    anonymous = client.open(path, method=method, json={})
    assert anonymous.status_code == 401
    assert anonymous.get_json()["details"] == [
        {
            "field": "Authorization",
            "message": f"send 'Authorization: Bearer <token>' with a token holding scope {scope!r}",
        }
    ]
    assert anonymous.headers["WWW-Authenticate"] == f'Bearer realm="stroke-risk", scope="{scope}"'
    unknown = client.open(path, method=method, json={}, headers=bearer("srk_nope"))
    assert unknown.status_code == 401
    assert unknown.get_json()["details"][0]["message"] == "the token is not known"
    malformed = client.open(path, method=method, json={}, headers={"Authorization": "Basic x"})
    assert malformed.status_code == 401
    assert malformed.get_json()["details"][0]["message"] == "must be 'Bearer <token>'"
    other = next(n for n, s in SCOPE_SETS.items() if scope not in s)
    refused = client.open(path, method=method, json={}, headers=bearer(tokens[other]))
    assert refused.status_code == 403
    assert refused.get_json()["details"] == [
        {
            "field": "scope",
            "message": f"credential {other!r} lacks scope {scope!r} (it has: {SCOPE_SETS[other]})",
        }
    ]
    allowed = client.open(path, method=method, json={}, headers=bearer(tokens["everything"]))
    assert allowed.status_code not in (401, 403)


def test_health_ready_openapi_and_the_page_are_open_version_needs_any_credential(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    for path in ("/health", "/ready", "/openapi.json", "/", "/static/page.css"):
        assert client.get(path).status_code == 200, path
    assert client.get("/version").status_code == 401
    version = client.get("/version", headers=bearer(tokens["labeller"]))
    assert version.status_code == 200
    assert version.get_json()["auth"]["mode"] == "tokens"


def test_a_label_records_the_credential_that_sent_it_and_is_rate_limited(
    client: FlaskClient, app: Flask, tokens: dict[str, str]
) -> None:
    ids = [
        client.post("/predict", json=RECORD, headers=bearer(tokens["scorer"])).get_json()[
            "prediction_id"
        ]
        for _ in range(5)
    ]
    statuses = [
        client.post(
            "/feedback",
            json={"prediction_id": i, "stroke": 1},
            headers=bearer(tokens["labeller"]),
        )
        for i in ids[:4]
    ]
    assert [r.status_code for r in statuses] == [201, 201, 201, 429]  # 3/minute
    assert statuses[3].get_json() == {
        "error": "too many requests",
        "details": [
            {
                "field": "(credential)",
                "message": "this credential sent more than 3 per 1 minute; retry later",
            }
        ],
    }
    # The limit is per credential: another one is not held back by the first.
    other = client.post(
        "/feedback",
        json={"prediction_id": ids[4], "stroke": 0},
        headers=bearer(tokens["everything"]),
    )
    assert other.status_code == 201
    store = app.extensions[MONITOR_KEY].writer.store
    assert [store.labelled_by(i) for i in ids] == ["labeller"] * 3 + [None, "everything"]


def test_only_feedback_requests_consult_the_rate_limiter(
    settings: Settings,
    logreg_model: LoadedModel,
    tokens: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Resolving that no limit applies cost /predict more than validating its record.
    checked: list[str] = []
    check = Limiter._check_request_limit

    def spy(self: Limiter, *args: Any, **kwargs: Any) -> None:
        checked.append(request.path)
        check(self, *args, **kwargs)

    monkeypatch.setattr(Limiter, "_check_request_limit", spy)
    client = create_app(settings, model=logreg_model).test_client()
    answer = client.post("/predict", json=RECORD, headers=bearer(tokens["everything"]))
    assert answer.status_code == 200 and checked == []
    assert client.get("/health").status_code == 200 and checked == []
    label = {"prediction_id": answer.get_json()["prediction_id"], "stroke": 1}
    assert (
        client.post("/feedback", json=label, headers=bearer(tokens["labeller"])).status_code == 201
    )
    assert checked == ["/feedback"]
    # Without a credential the 401 comes first: the limiter never counts it.
    assert client.post("/feedback", json=label).status_code == 401
    assert checked == ["/feedback"]


# --- page sessions -----------------------------------------------------------------------


def test_a_session_cookie_is_signed_and_expires(app: Flask) -> None:
    state = auth_state(app)
    cookie = session_cookie(state, "scorer", now=1000.0)
    session = read_session(state, cookie, now=1000.0)
    assert session is not None and session.name == "scorer"
    session_id, name, expires, mac = cookie.split(".")
    assert read_session(state, f"{session_id}.everything.{expires}.{mac}", now=1000.0) is None
    assert read_session(state, f"{session_id}.{name}.{int(expires) + 1}.{mac}", now=1000.0) is None
    assert read_session(state, cookie, now=float(expires) + 1) is None
    other_key = AuthState(state.mode, state.reason, state.store, b"k" * 32, 60.0)
    assert read_session(other_key, cookie, now=1000.0) is None
    assert csrf_token(state, session) != csrf_token(other_key, session)


def test_the_page_signs_in_scores_without_javascript_and_signs_out(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    assert "login-form" in client.get("/").get_data(as_text=True)
    values = form_values(HIGH_RISK_RECORD)
    unsigned = client.post("/", data={**values, "csrf_token": page_csrf_token(client)})
    assert unsigned.status_code == 401 and "sign in" in unsigned.get_data(as_text=True)
    token = page_csrf_token(client)
    anonymous = client.get_cookie("stroke_session")
    assert anonymous is not None
    login = client.post("/login", data={"token": tokens["scorer"], "csrf_token": token})
    assert login.status_code == 303 and login.headers["Location"] == "/"
    signed_in = client.get_cookie("stroke_session")
    assert signed_in is not None  # a new session id: a planted cookie is not carried over
    assert signed_in.value.split(".")[0] != anonymous.value.split(".")[0]
    scored = client.post("/", data={**values, "csrf_token": page_csrf_token(client)})
    assert scored.status_code == 200 and "risk-percent" in scored.get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": page_csrf_token(client)}).status_code == 303
    assert "login-form" in client.get("/").get_data(as_text=True)
