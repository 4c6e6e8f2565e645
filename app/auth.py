"""Who may call what: bearer tokens with scopes, the page's signed-in sessions, CSRF tokens.

What each endpoint needs (ENDPOINT_SCOPES, the one table of it):

- ``POST /predict``: scope ``predict``; ``POST /feedback``: ``feedback``; ``GET
  /metrics``: ``metrics``; ``GET /version``: any valid credential (it names the commit
  and model).
- Open: ``/health``, ``/ready``, ``/openapi.json`` (the public contract, no data), the
  page's ``GET /`` (the sign-in form until signed in) and its ``/static`` assets.

A client sends ``Authorization: Bearer <token>``. A clinician signs in on the page with a
token holding ``predict``: the server then sets a session cookie (HttpOnly,
SameSite=Strict, signed with the server's secret) naming the credential, and the page
sends each request with the session's CSRF token (an HMAC of the session id under the
same secret), in the ``X-CSRF-Token`` header (page.js) or the form's ``csrf_token`` field
(the page without JavaScript). A cookie alone never authorises anything.

Modes: ``STROKE_AUTH=tokens`` (default) with a credentials file; ``STROKE_AUTH=open``
runs without any check and says so in the log and in /version. A service bound to
loopback with no credentials configured also runs open (development); bound to any
other address it refuses to start instead (check_auth_mode).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request

from app.credentials import SCOPES, Credential, CredentialError, CredentialStore, read_credentials
from app.responses import error_response
from app.settings import Settings, SettingsError

logger = logging.getLogger(__name__)

AUTH_KEY = "stroke_auth"
ANY_SCOPE = "(any)"
# Rule templates that need a scope; every other route is open.
ENDPOINT_SCOPES: dict[str, str] = {
    "/predict": "predict",
    "/feedback": "feedback",
    "/metrics": "metrics",
    "/version": ANY_SCOPE,
}
SESSION_COOKIE = "stroke_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# In-process dispatch (the page without JavaScript) passes its caller's credential here;
# a WSGI environ key cannot be set by a client.
CREDENTIAL_ENVIRON_KEY = "stroke_risk.credential"
SECRET_BYTES = 32
OPEN_CREDENTIAL = Credential("(open)", frozenset(SCOPES), "")


@dataclass(frozen=True)
class AuthState:
    """How this service authenticates: its mode, credentials and session secret."""

    mode: str  # "tokens" | "open"
    reason: str
    store: CredentialStore
    secret: bytes
    session_seconds: float

    @property
    def open(self) -> bool:
        return self.mode == "open"

    def describe(self) -> dict[str, Any]:
        """What /version says about authentication (never a credential)."""
        return {"mode": self.mode, "reason": self.reason}


@dataclass(frozen=True)
class Session:
    """A page session: its id, the signed-in credential's name ("" before sign-in), expiry."""

    session_id: str
    name: str
    expires: int


def is_loopback(host: str) -> bool:
    """Return whether a bind address only accepts connections from this machine."""
    host = host.strip().strip("[]")
    if host.startswith("unix:") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_hosts(binds: Iterable[str]) -> list[str]:
    """Return the hosts of gunicorn bind strings ("0.0.0.0:8000", "[::1]:80", "unix:/x")."""
    hosts = []
    for bind in binds:
        if bind.startswith("unix:") or bind.startswith("fd://"):
            hosts.append("unix:")
        elif bind.startswith("["):
            hosts.append(bind[1 : bind.index("]")])
        else:
            hosts.append(bind.rsplit(":", 1)[0] if ":" in bind else bind)
    return hosts


def check_auth_mode(settings: Settings, hosts: Iterable[str]) -> tuple[str, str]:
    """Return (mode, reason); raise SettingsError when the service must not start.

    Without credentials and without STROKE_AUTH=open, only a loopback-bound service
    starts (open, for development).
    """
    if settings.auth == "open":
        return "open", "STROKE_AUTH=open: no request is authenticated"
    if settings.credentials_file is not None:
        return "tokens", "bearer tokens (STROKE_CREDENTIALS_FILE)"
    public = [host for host in hosts if not is_loopback(host)]
    if public:
        raise SettingsError(
            f"bound to {public[0]} with no credentials: set STROKE_CREDENTIALS_FILE "
            "(python -m app.credentials add NAME --scopes predict), or STROKE_AUTH=open "
            "to serve without authentication"
        )
    return "open", "no credentials configured and bound to loopback only"


def read_secret(settings: Settings) -> bytes:
    """Return the session/CSRF key: STROKE_SECRET_KEY_FILE's bytes, else a fresh one."""
    if settings.secret_key_file is None:
        return secrets.token_bytes(SECRET_BYTES)
    try:
        secret = settings.secret_key_file.read_bytes().strip()
    except OSError as error:
        raise SettingsError(
            f"STROKE_SECRET_KEY_FILE={str(settings.secret_key_file)!r}: cannot read "
            f"({error.strerror})"
        ) from None
    if len(secret) < SECRET_BYTES:
        raise SettingsError(
            f"STROKE_SECRET_KEY_FILE={str(settings.secret_key_file)!r}: must hold at least "
            f"{SECRET_BYTES} bytes (e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return secret


def build_auth_state(settings: Settings) -> AuthState:
    """Return the AuthState of settings; SettingsError (one line) when it cannot start."""
    mode, reason = check_auth_mode(settings, [settings.host])
    credentials: list[Credential] = []
    if mode == "tokens" and settings.credentials_file is not None:
        try:
            credentials = read_credentials(settings.credentials_file)
        except CredentialError as error:
            raise SettingsError(f"STROKE_CREDENTIALS_FILE: {error}") from None
        if not credentials:
            raise SettingsError(
                f"STROKE_CREDENTIALS_FILE={str(settings.credentials_file)!r} holds no credential"
            )
    return AuthState(
        mode,
        reason,
        CredentialStore(credentials),
        read_secret(settings),
        settings.session_seconds,
    )


def auth_state(app: Flask) -> AuthState:
    return app.extensions[AUTH_KEY]


# --- sessions and CSRF tokens ----------------------------------------------------------


def _mac(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()


def session_cookie(state: AuthState, name: str = "", now: float | None = None) -> str:
    """Return a new session's cookie value (a fresh id), signed in as name if given."""
    session_id = secrets.token_hex(16)
    expires = int((time.time() if now is None else now) + state.session_seconds)
    return f"{session_id}.{name}.{expires}.{_mac(state.secret, session_id, name, str(expires))}"


def read_session(state: AuthState, value: str | None, now: float | None = None) -> Session | None:
    """Return the session of a cookie value; None when malformed, forged or expired."""
    parts = (value or "").split(".")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    session_id, name, expires, mac = parts
    if not hmac.compare_digest(mac, _mac(state.secret, session_id, name, expires)):
        return None
    if int(expires) < (time.time() if now is None else now):
        return None
    return Session(session_id, name, int(expires))


def csrf_token(state: AuthState, session: Session) -> str:
    """Return the CSRF token of a session: an HMAC of its id under the server's secret."""
    return _mac(state.secret, "csrf", session.session_id)


def csrf_matches(state: AuthState, session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_token(state, session), str(sent))


def session_credential(state: AuthState, session: Session | None) -> Credential | None:
    """Return the credential a session is signed in with (None: not signed in)."""
    if state.open:
        return OPEN_CREDENTIAL
    if session is None or not session.name:
        return None
    return state.store.by_name(session.name)


# --- the request check -----------------------------------------------------------------


def auth_error(status: int, error: str, field: str, message: str, scope: str) -> Response:
    headers = {}
    if status == 401:
        wanted = "" if scope == ANY_SCOPE else f', scope="{scope}"'
        headers["WWW-Authenticate"] = f'Bearer realm="stroke-risk"{wanted}'
    return error_response(status, error, [{"field": field, "message": message}], headers)


def authenticate(state: AuthState, scope: str) -> Credential | Response:
    """Return the request's credential when it grants scope, else the 401/403 answer."""
    in_process = request.environ.get(CREDENTIAL_ENVIRON_KEY)
    if isinstance(in_process, Credential):
        credential: Credential | None = in_process
    elif state.open:
        credential = OPEN_CREDENTIAL
    else:
        header = request.headers.get("Authorization")
        needed = "any scope" if scope == ANY_SCOPE else f"scope {scope!r}"
        if header is not None:
            kind, _, token = header.partition(" ")
            if kind.lower() != "bearer" or not token.strip():
                return auth_error(
                    401,
                    "malformed credentials",
                    "Authorization",
                    "must be 'Bearer <token>'",
                    scope,
                )
            credential = state.store.authenticate(token.strip())
            if credential is None:
                return auth_error(
                    401, "invalid credentials", "Authorization", "the token is not known", scope
                )
        else:
            session = read_session(state, request.cookies.get(SESSION_COOKIE))
            credential = session_credential(state, session)
            if credential is None or session is None:
                return auth_error(
                    401,
                    "authentication required",
                    "Authorization",
                    f"send 'Authorization: Bearer <token>' with a token holding {needed}",
                    scope,
                )
            if not csrf_matches(state, session, request.headers.get(CSRF_HEADER)):
                return auth_error(
                    403,
                    "missing CSRF token",
                    CSRF_HEADER,
                    "a signed-in page must send its session's CSRF token; reload the page",
                    scope,
                )
    if scope != ANY_SCOPE and not credential.allows(scope):
        granted = ", ".join(sorted(credential.scopes)) or "none"
        return auth_error(
            403,
            "insufficient scope",
            "scope",
            f"credential {credential.name!r} lacks scope {scope!r} (it has: {granted})",
            scope,
        )
    return credential


def require_scope() -> Response | None:
    """before_request: answer 401/403 unless the request's credential has the route's scope."""
    rule = request.url_rule
    scope = ENDPOINT_SCOPES.get(rule.rule) if rule is not None else None
    if scope is None:
        return None
    result = authenticate(auth_state(current_app), scope)
    if isinstance(result, Response):
        return result
    g.credential = result
    return None


def current_credential_name() -> str:
    """Return the name of the credential this request was authorised with."""
    credential = g.get("credential")
    return credential.name if isinstance(credential, Credential) else OPEN_CREDENTIAL.name


def init_auth(app: Flask, settings: Settings) -> AuthState:
    """Check the auth settings, install the scope check and announce the mode."""
    state = build_auth_state(settings)
    app.extensions[AUTH_KEY] = state
    app.before_request(require_scope)
    if state.open:
        logger.warning("authentication is OFF (%s)", state.reason)
    else:
        logger.info("authentication: %d credential(s), %s", len(state.store), state.reason)
    return state
