"""The read side of releases.json: which release a model revision is.

`make release` (stroke_risk/release/publish.py) writes releases.json, a JSON list of release
records,
newest first; the service reads it here to report the release it serves. Standard library
only: the serving image has no MLflow or DVC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RELEASES_FILE = "releases.json"
MODEL_HASH_TAG = "model_md5"
# The threshold lives in the metadata: the same model file with another threshold makes other
# decisions, so a release is identified by both hashes (as the MLflow runs are).
METADATA_HASH_TAG = "metadata_md5"


class ReleaseError(RuntimeError):
    """A release cannot go ahead; str() is one line naming the problem and the fix."""


def read_releases(text: str, source: str = RELEASES_FILE) -> list[dict[str, Any]]:
    """Parse releases.json: a JSON list of release records, newest first."""
    try:
        releases = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReleaseError(f"{source} is not valid JSON ({error}); restore it from git") from None
    if not isinstance(releases, list) or not all(
        isinstance(item, dict) and "version" in item and MODEL_HASH_TAG in item for item in releases
    ):
        raise ReleaseError(
            f"{source} must be a list of records with `version` and `{MODEL_HASH_TAG}`; "
            "restore it from git"
        )
    return releases


def same_revision(release: Mapping[str, Any], model_md5: str, metadata_md5: str | None) -> bool:
    """Same model file and, when both sides know it, the same metadata (threshold)."""
    known = release.get(METADATA_HASH_TAG)
    return release[MODEL_HASH_TAG] == model_md5 and (
        metadata_md5 is None or known is None or known == metadata_md5
    )


def release_for_model(
    model_md5: str, releases_path: Path, metadata_md5: str | None = None
) -> str | None:
    """The newest release version of this model file (and metadata, when given), or None
    (serve as "unreleased").

    A missing releases file means nothing was released yet (None); a malformed one raises
    ReleaseError with a one-line message, so the caller can log it and report "unreleased".
    """
    try:
        text = Path(releases_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    for release in read_releases(text, str(releases_path)):
        if same_revision(release, model_md5, metadata_md5):
            return str(release["version"])
    return None
