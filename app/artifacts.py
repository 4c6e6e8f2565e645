"""Find the model revision of the working tree and check it against dvc.lock.

The service serves the data-only serving artifact (models/serving_model.npz,
stroke_risk/models/serving_artifact.py), never the pickled pipeline: the file is read into memory
once, its md5 compared with the one dvc.lock records, and only those verified bytes are
parsed, as numpy arrays with allow_pickle=False and XGBoost's own model format. No file
can make this process unpickle anything, whatever dvc.lock, the run cache or the remote
hold. Every failure is an ArtifactError whose message is one line saying what is wrong
and how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.settings import Settings

if TYPE_CHECKING:
    from stroke_risk.models.serving_artifact import ServingModel

logger = logging.getLogger(__name__)

FIX = "run `make run` to rebuild it, or `dvc pull` to fetch it"


class ArtifactError(RuntimeError):
    """The model revision cannot be served; str() is one line with the fix."""


@dataclass(frozen=True)
class VerifiedArtifacts:
    """The serving artifact's bytes whose md5 matches dvc.lock, and the JSON documents
    beside them."""

    model_bytes: bytes
    model_md5: str
    metadata: dict[str, Any]
    training_metrics: dict[str, Any] | None
    git_commit: str | None
    metadata_md5: str | None = None


def display_path(path: Path, settings: Settings) -> str:
    """Return path relative to the project dir when inside it (shorter error messages)."""
    try:
        return str(path.resolve().relative_to(settings.project_dir))
    except ValueError:
        return str(path)


def read_lock_hashes(lock_path: Path) -> dict[str, str]:
    """Return {path relative to dvc.lock's directory: md5} for every out of every stage."""
    import yaml

    try:
        text = lock_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{lock_path.name} not found at {lock_path}; {FIX}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ArtifactError(f"cannot read {lock_path} ({error}); {FIX}") from None
    try:
        lock = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ArtifactError(f"{lock_path} is not valid YAML; {FIX}") from None
    hashes: dict[str, str] = {}
    stages = lock.get("stages") if isinstance(lock, dict) else None
    for stage in (stages or {}).values():
        for out in (stage or {}).get("outs") or []:
            if isinstance(out, dict) and "path" in out and "md5" in out:
                hashes[os.path.normpath(str(out["path"]))] = str(out["md5"])
    return hashes


def locked_md5(path: Path, hashes: dict[str, str], settings: Settings) -> str | None:
    """Return the md5 dvc.lock records for path, or None when dvc.lock does not name it."""
    base = settings.dvc_lock_path.resolve().parent
    try:
        relative = os.path.normpath(str(path.resolve().relative_to(base)))
    except ValueError:
        return None
    return hashes.get(relative)


def read_verified(path: Path, expected_md5: str | None, settings: Settings) -> tuple[bytes, str]:
    """Return (bytes, md5) of a file after checking the md5 against dvc.lock's record."""
    shown = display_path(path, settings)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{shown} is missing; {FIX}") from None
    except OSError as error:
        raise ArtifactError(f"cannot read {shown} ({error.strerror}); {FIX}") from None
    actual = hashlib.md5(data).hexdigest()
    if expected_md5 is None:
        raise ArtifactError(f"{settings.dvc_lock_path.name} records no md5 for {shown}; {FIX}")
    if actual != expected_md5:
        raise ArtifactError(
            f"{shown} does not match {settings.dvc_lock_path.name} (md5 {actual}, expected "
            f"{expected_md5}): it was modified or comes from another revision; {FIX}"
        )
    return data, actual


def parse_json_document(data: bytes, shown: str) -> dict[str, Any]:
    """Return the JSON object in data; raise ArtifactError when it is not one."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ArtifactError(f"{shown} is unreadable ({error}); {FIX}") from None
    if not isinstance(document, dict):
        raise ArtifactError(f"{shown} is not a JSON object; {FIX}")
    return document


def check_metadata(metadata: dict[str, Any], shown: str) -> None:
    """Raise ArtifactError unless metadata has a usable decision threshold and family."""
    threshold = metadata.get("decision_threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ArtifactError(f"{shown} has no numeric decision_threshold; {FIX}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ArtifactError(f"{shown}: decision_threshold {threshold} is not in [0, 1]; {FIX}")
    if not isinstance(metadata.get("model_family"), str):
        raise ArtifactError(f"{shown} has no model_family; {FIX}")


def read_training_metrics(settings: Settings, hashes: dict[str, str]) -> dict[str, Any] | None:
    """Return reports/metrics.json when present and matching dvc.lock; else None, logged.

    Metrics are informational (shown by /version), so a problem with them is a warning,
    not a reason to refuse to serve.
    """
    path = settings.metrics_path
    shown = display_path(path, settings)
    try:
        expected = locked_md5(path, hashes, settings)
        data, _ = read_verified(path, expected, settings)
        return parse_json_document(data, shown)
    except ArtifactError as error:
        logger.warning("training metrics not shown by /version: %s", error)
        return None


def find_git_commit(project_dir: Path) -> str | None:
    """Return the commit checked out in project_dir by reading .git directly, or None.

    Reading the files avoids spawning git at startup; a detached HEAD, a loose ref and a
    packed ref are handled, anything else gives None.
    """
    git_dir = project_dir / ".git"
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head if re.fullmatch(r"[0-9a-f]{40,64}", head) else None
        ref = head.split(":", 1)[1].strip()
        ref_file = git_dir / ref
        if ref_file.is_file():
            commit = ref_file.read_text().strip()
            return commit if re.fullmatch(r"[0-9a-f]{40,64}", commit) else None
        packed = git_dir / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        return None
    return None


def verify_artifacts(settings: Settings) -> VerifiedArtifacts:
    """Return the model bytes and metadata after checking both against dvc.lock.

    Raises ArtifactError (one line) when dvc.lock or an artifact is missing, a hash does
    not match, or the metadata is unreadable.
    """
    hashes = read_lock_hashes(settings.dvc_lock_path)
    model_bytes, model_md5 = read_verified(
        settings.model_path, locked_md5(settings.model_path, hashes, settings), settings
    )
    metadata_shown = display_path(settings.metadata_path, settings)
    metadata_bytes, metadata_md5 = read_verified(
        settings.metadata_path, locked_md5(settings.metadata_path, hashes, settings), settings
    )
    metadata = parse_json_document(metadata_bytes, metadata_shown)
    check_metadata(metadata, metadata_shown)
    check_authenticity(settings, model_bytes, metadata_bytes)
    return VerifiedArtifacts(
        model_bytes=model_bytes,
        model_md5=model_md5,
        metadata=metadata,
        training_metrics=read_training_metrics(settings, hashes),
        git_commit=settings.git_commit or find_git_commit(settings.project_dir),
        metadata_md5=metadata_md5,
    )


def check_authenticity(settings: Settings, model_bytes: bytes, metadata_bytes: bytes) -> None:
    """Refuse (ArtifactError, one line) a model no release signs with the trusted key.

    The md5 check against dvc.lock proves the files are the revision's, not who made
    them: anyone who can write models/ and dvc.lock (or a DVC remote or run cache) passes
    it. With STROKE_TRUSTED_KEY the serving artifact and metadata must be covered by a
    release signature in releases.json (`make release`, stroke_risk/release/signing.py); without it
    the service serves and says, once it has loaded the model, that authenticity is not
    checked (app/model.py; a refusal stays one line).
    """
    if settings.trusted_key is None:
        return
    from stroke_risk.release.records import ReleaseError, read_releases
    from stroke_risk.release.signing import SigningError, check_signed, load_public_key

    shown = display_path(settings.model_path, settings)
    releases_shown = display_path(settings.releases_path, settings)
    try:
        public_key = load_public_key(settings.trusted_key)
        try:
            text = settings.releases_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = "[]"
        version = check_signed(
            read_releases(text, releases_shown),
            serving_model=model_bytes,
            metadata=metadata_bytes,
            public_key=public_key,
        )
    except (SigningError, ReleaseError, OSError, UnicodeDecodeError) as error:
        raise ArtifactError(
            f"{shown} refused: {str(error).splitlines()[0]} (STROKE_TRUSTED_KEY "
            f"{settings.trusted_key}, {releases_shown}); serve a model released with "
            "`make release`, or unset STROKE_TRUSTED_KEY to serve unchecked"
        ) from None
    logger.info("model signed by release %s with the trusted key", version)


def verify_reference_profile(settings: Settings) -> dict[str, Any]:
    """Return models/reference_profile.json after checking its md5 against dvc.lock.

    The featurize stage writes it from the training split; live drift is computed
    against it, so a stale or edited profile is refused like a stale model: ArtifactError
    (one line) when it is missing, does not match dvc.lock or is not a JSON object.
    """
    hashes = read_lock_hashes(settings.dvc_lock_path)
    path = settings.reference_profile_path
    data, _ = read_verified(path, locked_md5(path, hashes, settings), settings)
    return parse_json_document(data, display_path(path, settings))


def read_serving_artifact(artifacts: VerifiedArtifacts, settings: Settings) -> ServingModel:
    """Return the serving model parsed from the verified bytes (never from the path).

    Data only: numpy arrays read with allow_pickle=False and XGBoost's own UBJSON model, so a
    file holding a pickle is refused, never executed. Raises ArtifactError (one line) for
    bytes that are not a serving artifact of this code's format.
    """
    from stroke_risk.models.serving_artifact import ServingArtifactError, read_serving_model

    shown = display_path(settings.model_path, settings)
    try:
        return read_serving_model(artifacts.model_bytes)
    except ServingArtifactError as error:
        raise ArtifactError(f"{shown} cannot be served ({error}); {FIX}") from None


UNRELEASED = "unreleased"


def find_release(settings: Settings, model_md5: str, metadata_md5: str | None) -> str:
    """Return the release version that shipped this model and metadata, or "unreleased".

    Read from releases.json (``make release`` writes it; STROKE_RELEASES_PATH). A missing
    file means nothing was released yet; a malformed one is logged (one line) and the
    model is served as unreleased: the release name is information, not a reason to stop.
    """
    from stroke_risk.release.records import ReleaseError, release_for_model

    try:
        version = release_for_model(model_md5, settings.releases_path, metadata_md5)
    except (ReleaseError, OSError, UnicodeDecodeError) as error:
        logger.warning("serving as %s: %s", UNRELEASED, str(error).splitlines()[0][:300])
        return UNRELEASED
    return version or UNRELEASED
