"""API credentials: named bearer tokens with scopes, stored only as their sha256.

A credentials file holds one credential a line, ``name:scope1,scope2:sha256:<hex>``
(``#`` comments and blank lines allowed). The token itself is never stored or logged:
``python -m app.credentials add NAME --scopes predict,feedback --file PATH`` prints it
once and appends its hash. Tokens are 256 random bits, so a plain sha256 cannot be
brute-forced and lets every request be checked with one hash and one dict lookup
(a slow password hash such as scrypt would cost milliseconds per request for no gain).

Scopes (SCOPES): ``predict`` (POST /predict, the clinician page), ``feedback`` (POST
/feedback), ``metrics`` (GET /metrics). Any valid credential may read /version.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SCOPES = ("predict", "feedback", "metrics")
HASH_PREFIX = "sha256:"
TOKEN_PREFIX = "srk_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
FILE_MODE = 0o600


class CredentialError(ValueError):
    """A credentials file or command-line argument is unusable (one-line message)."""


@dataclass(frozen=True)
class Credential:
    """A named credential and the scopes it grants."""

    name: str
    scopes: frozenset[str]
    token_sha256: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def token_digest(token: str) -> str:
    """Return the hex sha256 of a presented token (what the credentials file stores)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """Return a fresh token: a fixed prefix and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_scopes(text: str) -> frozenset[str]:
    """Return the scopes of "predict,feedback"; CredentialError names an unknown one."""
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise CredentialError(
            f"unknown scope {', '.join(unknown) or '(none given)'}; allowed: {', '.join(SCOPES)}"
        )
    return scopes


def format_line(credential: Credential) -> str:
    """Return the credentials-file line of a credential."""
    scopes = ",".join(s for s in SCOPES if s in credential.scopes)
    return f"{credential.name}:{scopes}:{HASH_PREFIX}{credential.token_sha256}"


def parse_line(line: str, where: str) -> Credential:
    """Return the credential of one file line; CredentialError names where it is wrong."""
    parts = line.split(":")
    if len(parts) != 4 or f"{parts[2]}:" != HASH_PREFIX:
        raise CredentialError(f"{where}: expected name:scopes:sha256:<64 hex digits>")
    name, scopes, _, digest = parts
    if not NAME_PATTERN.fullmatch(name):
        raise CredentialError(f"{where}: name must be 1-64 of A-Z a-z 0-9 _ -")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise CredentialError(f"{where}: the hash must be 64 lowercase hex digits")
    try:
        return Credential(name, parse_scopes(scopes), digest)
    except CredentialError as error:
        raise CredentialError(f"{where}: {error}") from None


def parse_credentials(text: str, source: str) -> list[Credential]:
    """Return every credential of a file's text; names and hashes must be unique."""
    credentials: list[Credential] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            credentials.append(parse_line(line, f"{source} line {number}"))
    names = [c.name for c in credentials]
    digests = [c.token_sha256 for c in credentials]
    if len(set(names)) != len(names) or len(set(digests)) != len(digests):
        raise CredentialError(f"{source}: a credential name or token appears twice")
    return credentials


def read_credentials(path: Path) -> list[Credential]:
    """Read a credentials file; CredentialError (one line) when missing or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CredentialError(f"cannot read credentials file {path} ({error.strerror})") from None
    return parse_credentials(text, str(path))


class CredentialStore:
    """The credentials a service accepts, looked up by the sha256 of a presented token."""

    def __init__(self, credentials: Iterable[Credential]) -> None:
        self._by_digest: Mapping[str, Credential] = {c.token_sha256: c for c in credentials}
        self._by_name: Mapping[str, Credential] = {c.name: c for c in self._by_digest.values()}

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, token: str) -> Credential | None:
        """Return the credential of a token, None if unknown.

        The dict is keyed by the token's sha256, so the lookup reveals nothing about a
        stored token through timing; the final compare_digest keeps it that way.
        """
        digest = token_digest(token)
        credential = self._by_digest.get(digest)
        if credential is None or not hmac.compare_digest(credential.token_sha256, digest):
            return None
        return credential

    def by_name(self, name: str) -> Credential | None:
        """Return the credential called name (a signed-in session names its credential)."""
        return self._by_name.get(name)


def add_credential(path: Path, name: str, scopes: frozenset[str]) -> str:
    """Append a new credential to path (created 0600); return its token (shown once)."""
    if not NAME_PATTERN.fullmatch(name):
        raise CredentialError(f"name {name[:80]!r}: must be 1-64 of A-Z a-z 0-9 _ -")
    existing = read_credentials(path) if path.exists() else []
    if any(c.name == name for c in existing):
        raise CredentialError(f"{path} already has a credential {name!r}; remove it first")
    token = new_token()
    line = format_line(Credential(name, scopes, token_digest(token)))
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    os.chmod(path, FILE_MODE)
    return token


def remove_credential(path: Path, name: str) -> None:
    """Remove the credential called name from path (the service reads it at start-up)."""
    kept = [c for c in read_credentials(path) if c.name != name]
    if len(kept) == len(read_credentials(path)):
        raise CredentialError(f"{path} has no credential {name!r}")
    text = "".join(format_line(c) + "\n" for c in kept)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m app.credentials add|remove|list`: manage a credentials file."""
    parser = argparse.ArgumentParser(prog="python -m app.credentials", description=__doc__)
    parser.add_argument(
        "--file",
        type=Path,
        default=Path(os.environ.get("STROKE_CREDENTIALS_FILE") or "var/credentials"),
        help="credentials file (default: $STROKE_CREDENTIALS_FILE or var/credentials)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create a credential; prints its token once")
    add.add_argument("name")
    add.add_argument("--scopes", required=True, help=f"comma-separated: {', '.join(SCOPES)}")
    remove = commands.add_parser("remove", help="delete a credential")
    remove.add_argument("name")
    commands.add_parser("list", help="names and scopes (never tokens)")
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "add":
            token = add_credential(arguments.file, arguments.name, parse_scopes(arguments.scopes))
            print(token)
            print(
                f"credential {arguments.name!r} added to {arguments.file}; the token above is "
                "shown only once (only its sha256 is stored)",
                file=sys.stderr,
            )
        elif arguments.command == "remove":
            remove_credential(arguments.file, arguments.name)
        else:
            for credential in read_credentials(arguments.file):
                print(f"{credential.name}\t{','.join(sorted(credential.scopes))}")
    except CredentialError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
