"""Release signatures: `make release` signs what the service loads; the service checks it.

A release signs one statement with an ed25519 key (`cryptography`):

    {"metadata_sha256": ..., "purpose": "stroke-risk serving model",
     "serving_model_sha256": ..., "version": "1.2.0"}

as canonical JSON (sorted keys, no spaces), over the sha256 of models/serving_model.npz
(the data-only artifact, stroke_risk/models/serving_artifact.py) and of models/model_metadata.json
(the threshold: the same model with another threshold makes other decisions). The statement
and its base64 signature go into the release's record in releases.json (``signature``), so
the signature is committed with the release, reviewed in its commit, travels with its git
tag and is copied into the serving image with releases.json; no extra file or store.

The private key lives outside the repository, by default in
~/.config/stroke-risk/release.key (0600), made once with

    python -m stroke_risk.commands.signing keygen --out ~/.config/stroke-risk/release.key

which also writes the public key (release.key.pub) to give the services
(STROKE_TRUSTED_KEY). A service given that public key refuses, in one line, a model no
release record signs with it (app/artifacts.py); without one it serves and logs that
authenticity is not checked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PURPOSE = "stroke-risk serving model"
DEFAULT_KEY_PATH = Path("~/.config/stroke-risk/release.key")
# Environment variable naming the private key `make release` signs with.
KEY_VARIABLE = "STROKE_RELEASE_KEY"
KEYGEN_COMMAND = "python -m stroke_risk.commands.signing keygen --out"


class SigningError(RuntimeError):
    """A key or signature cannot be used; str() is one line naming the fix."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def statement(*, version: str, serving_model_sha256: str, metadata_sha256: str) -> bytes:
    """Return the bytes a release signs (canonical JSON)."""
    document = {
        "metadata_sha256": metadata_sha256,
        "purpose": PURPOSE,
        "serving_model_sha256": serving_model_sha256,
        "version": version,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _inside_git_work_tree(path: Path) -> Path | None:
    """Return the top of the git work tree holding path's directory, or None."""
    directory = path.parent
    while not directory.exists():
        directory = directory.parent
    result = subprocess.run(
        ["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
    )
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def keygen(out: Path) -> Path:
    """Write a new ed25519 private key to out (0600, parent 0700) and its public key to
    out + ".pub"; return the public key's path. Refuses to overwrite a key or to write
    one inside a git work tree (a private key never belongs in a repository)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = out.expanduser().absolute()
    public_path = out.with_name(out.name + ".pub")
    if out.exists() or public_path.exists():
        raise SigningError(f"{out} already exists; keep it, or remove it first to replace it")
    repository = _inside_git_work_tree(out)
    if repository is not None:
        raise SigningError(
            f"{out} is inside the git work tree {repository}; keep the private key outside "
            f"any repository, e.g. {DEFAULT_KEY_PATH}"
        )
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    handle = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "wb") as stream:
        stream.write(private_pem)
    public_path.write_bytes(public_pem)
    return public_path


def release_key_path() -> Path:
    """The private key `make release` signs with: $STROKE_RELEASE_KEY or the default."""
    return Path(os.environ.get(KEY_VARIABLE) or DEFAULT_KEY_PATH).expanduser()


def load_private_key(path: Path) -> Any:
    """Return the ed25519 private key at path; SigningError (one line) otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SigningError(
            f"no release signing key at {path}; create one with: {KEYGEN_COMMAND} {path} "
            f"(or point {KEY_VARIABLE} at yours)"
        ) from None
    if path.stat().st_mode & 0o077:
        raise SigningError(f"{path} can be read by other users; run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise SigningError(f"{path} is not a PEM private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} is not an ed25519 key; create one with {KEYGEN_COMMAND}")
    return key


def load_public_key(path: Path) -> Any:
    """Return the ed25519 public key at path; SigningError (one line) otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as error:
        raise SigningError(f"trusted key {path} cannot be read ({error.strerror})") from None
    except (ValueError, TypeError):
        raise SigningError(f"trusted key {path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"trusted key {path} is not an ed25519 public key")
    return key


def sign_release(
    *, version: str, serving_model: bytes, metadata: bytes, private_key: Any
) -> dict[str, str]:
    """Return the ``signature`` entry of a release record: the signed hashes and the
    base64 signature of their statement."""
    serving_sha, metadata_sha = sha256_hex(serving_model), sha256_hex(metadata)
    signed = statement(
        version=version, serving_model_sha256=serving_sha, metadata_sha256=metadata_sha
    )
    return {
        "algorithm": "ed25519",
        "serving_model_sha256": serving_sha,
        "metadata_sha256": metadata_sha,
        "signature": base64.b64encode(private_key.sign(signed)).decode(),
    }


def check_signed(
    releases: Sequence[Mapping[str, Any]], *, serving_model: bytes, metadata: bytes, public_key: Any
) -> str:
    """Return the version of the release whose signature, valid under public_key, covers
    exactly these serving-model and metadata bytes; raise SigningError (one line) when none
    does: "unsigned" if no release names them, "wrongly signed" if one names them but its
    signature does not verify with the trusted key."""
    from cryptography.exceptions import InvalidSignature

    serving_sha, metadata_sha = sha256_hex(serving_model), sha256_hex(metadata)
    named = []
    for release in releases:
        entry = release.get("signature")
        if not isinstance(entry, Mapping):
            continue
        if (entry.get("serving_model_sha256"), entry.get("metadata_sha256")) != (
            serving_sha,
            metadata_sha,
        ):
            continue
        named.append(str(release.get("version")))
        signed = statement(
            version=str(release.get("version")),
            serving_model_sha256=serving_sha,
            metadata_sha256=metadata_sha,
        )
        try:
            public_key.verify(base64.b64decode(str(entry.get("signature")), validate=True), signed)
        except (InvalidSignature, ValueError):
            continue
        return str(release.get("version"))
    if named:
        raise SigningError(
            f"wrongly signed: the signature of release {', '.join(named)} does not verify "
            f"with the trusted key"
        )
    raise SigningError(
        f"unsigned: no release signs this model (serving artifact sha256 {serving_sha[:12]}…, "
        f"metadata sha256 {metadata_sha[:12]}…)"
    )
