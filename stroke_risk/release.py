"""Release the trained model: tag the revision, promote it in MLflow, record it.

`python -m stroke_risk.release 1.2.0` (what `make release VERSION=1.2.0` runs) refuses unless
the git working tree is clean, `dvc status` is clean and every output is in the DVC remote.
It then, as one unit (a failure undoes the steps already taken):

1. records the release in `releases.json` (machine-readable, read by the service; with the
   ed25519 signature of the serving artifact and metadata, stroke_risk/signing.py, made with
   the key at $STROKE_RELEASE_KEY or ~/.config/stroke-risk/release.key) and in a
   `CHANGELOG.md` section (version, model md5, test metrics with 95 % CIs, threshold), and
   commits both;
2. tags that commit the way GTO (DVC's model registry) reads it: `stroke-risk@v1.2.0`
   registers the version, `stroke-risk#production#N` assigns it the production stage;
3. moves the MLflow alias `@production` to the registered version whose `model_md5` tag is the
   md5 of `models/model.joblib` recorded in dvc.lock.

Every refusal is one line naming the problem and the fix. Nothing is pushed: the command
prints the `git push` line to publish the tags.

The module imports only the standard library and PyYAML at load time. The service reads
releases.json through `stroke_risk.release_file` (re-exported here), which imports no MLflow
or DVC even inside functions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The read side of releases.json lives in release_file (standard library only, for the
# service); re-exported here for the release command and its callers.
from stroke_risk.release_file import (
    METADATA_HASH_TAG,
    MODEL_HASH_TAG,
    RELEASES_FILE,
    ReleaseError,
    read_releases,
    release_for_model,
)
from stroke_risk.release_file import same_revision as _same_revision

__all__ = ["ReleaseError", "read_releases", "release", "release_for_model"]

ARTIFACT = "stroke-risk"
STAGE = "production"
MODEL_PATH = "models/model.joblib"
TRAIN_STAGE = "train"
CHANGELOG_FILE = "CHANGELOG.md"
METADATA_PATH = "models/model_metadata.json"
UNRELEASED_HEADING = "## [Unreleased]"
# semver.org's recommended pattern; a leading "v" is accepted and dropped.
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# Test metrics shown in the changelog, in this order, with their bootstrap CIs.
CHANGELOG_METRICS = (
    ("roc_auc", "ROC-AUC"),
    ("average_precision", "Average precision"),
    ("brier", "Brier score"),
    ("recall", "Recall at threshold"),
    ("precision", "Precision at threshold"),
    ("specificity", "Specificity at threshold"),
)


# ---------------------------------------------------------------- pure functions


def parse_version(text: str) -> str:
    """Return the semantic version in `text` ("1.2.0" or "v1.2.0" -> "1.2.0")."""
    candidate = text.strip()
    candidate = candidate[1:] if candidate[:1] in ("v", "V") else candidate
    if not SEMVER.match(candidate):
        raise ReleaseError(
            f"VERSION {text!r} is not a semantic version MAJOR.MINOR.PATCH; "
            "rerun with e.g. `make release VERSION=1.2.0`"
        )
    return candidate


def version_tag(version: str) -> str:
    """The GTO registration tag of a version: `stroke-risk@v1.2.0`."""
    return f"{ARTIFACT}@v{version}"


def next_stage_tag(existing_tags: Sequence[str], stage: str = STAGE) -> str:
    """The next GTO stage-assignment tag (`stroke-risk#production#N`, N one past the largest)."""
    pattern = re.compile(rf"^{re.escape(ARTIFACT)}#{re.escape(stage)}#(\d+)$")
    numbers = [int(match[1]) for tag in existing_tags if (match := pattern.match(tag))]
    return f"{ARTIFACT}#{stage}#{max(numbers, default=0) + 1}"


def locked_md5(lock: Mapping[str, Any], path: str) -> str | None:
    """The md5 dvc.lock records for `path` as an output of the train stage, or None."""
    stage = (lock.get("stages") or {}).get(TRAIN_STAGE) or {}
    for out in stage.get("outs") or []:
        if isinstance(out, Mapping) and out.get("path") == path and out.get("md5"):
            return str(out["md5"])
    return None


def model_md5_from_lock(lock: Mapping[str, Any]) -> str:
    """The md5 dvc.lock records for models/model.joblib as an output of the train stage."""
    found = locked_md5(lock, MODEL_PATH)
    if found:
        return found
    raise ReleaseError(
        f"dvc.lock records no md5 for {MODEL_PATH} (stage {TRAIN_STAGE}); "
        "run `make run` and commit dvc.lock"
    )


def check_release_is_new(
    *,
    version: str,
    model_md5: str,
    releases: Sequence[Mapping[str, Any]],
    tags: Sequence[str],
    metadata_md5: str | None = None,
) -> None:
    """Refuse a version that exists, or a model that is already the latest release."""
    if version_tag(version) in tags or any(r["version"] == version for r in releases):
        raise ReleaseError(
            f"version {version} is already released (tag {version_tag(version)}); "
            "pick a higher VERSION"
        )
    if releases and _same_revision(releases[0], model_md5, metadata_md5):
        raise ReleaseError(
            f"the model (md5 {model_md5}) is already the latest release, "
            f"{releases[0]['version']}; nothing to release — train a changed model first"
        )


def build_release(
    *,
    version: str,
    model_md5: str,
    registry_version: str,
    source_commit: str,
    released_on: dt.date,
    evaluation: Mapping[str, Any],
    metrics: Mapping[str, Any],
    metadata: Mapping[str, Any],
    data_name: str,
    registered_model: str = ARTIFACT,
    metadata_md5: str | None = None,
) -> dict[str, Any]:
    """The release record kept in releases.json (and rendered into the changelog).

    `evaluation` is reports/evaluation.json (test metrics with CIs, threshold), `metrics`
    reports/metrics.json (CV summary), `metadata` models/model_metadata.json.
    """
    test = evaluation.get("test") or {}
    missing = [key for key, _ in CHANGELOG_METRICS if key not in test]
    if missing or "threshold" not in evaluation:
        absent = ", ".join(missing or ["threshold"])
        raise ReleaseError(
            f"reports/evaluation.json lacks {absent}; run `make run` and commit the reports"
        )
    return {
        "version": version,
        "tag": version_tag(version),
        MODEL_HASH_TAG: model_md5,
        METADATA_HASH_TAG: metadata_md5,
        "registered_model": registered_model,
        "registry_version": registry_version,
        "source_commit": source_commit,
        "date": released_on.isoformat(),
        "model_family": metadata.get("model_family", "unknown"),
        "data": data_name,
        "threshold": dict(evaluation["threshold"]),
        "test_metrics": {key: dict(test[key]) for key, _ in CHANGELOG_METRICS},
        "cv_metrics": dict(metrics.get("cv") or {}),
    }


def _unreleased_bounds(lines: list[str]) -> tuple[int, int] | None:
    """(heading index, end index) of the Unreleased section, or None."""
    for start, line in enumerate(lines):
        if line.strip() == UNRELEASED_HEADING:
            end = next(
                (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                len(lines),
            )
            return start, end
    return None


def unreleased_notes(changelog: str) -> str:
    """The text under `## [Unreleased]` (stripped; "" when absent or empty)."""
    lines = changelog.splitlines()
    bounds = _unreleased_bounds(lines)
    if bounds is None:
        return ""
    return "\n".join(lines[bounds[0] + 1 : bounds[1]]).strip()


def changelog_section(release: Mapping[str, Any], notes: str) -> str:
    """The Markdown section of one release; `notes` are the Unreleased notes it absorbs."""
    threshold = release["threshold"]
    policy = threshold.get("policy", "?")
    if policy == "min_recall":
        policy = f"min_recall, target recall {threshold.get('target_recall')}"
    lines = [
        f"## [{release['version']}] - {release['date']}",
        "",
        f"- Model: `{release['registered_model']}` {release['model_family']}, "
        f"md5 `{release[MODEL_HASH_TAG]}`, MLflow version {release['registry_version']} "
        f"(`@{STAGE}`), git tag `{release['tag']}`",
        f"- Data: `{release['data']}`; source commit `{release['source_commit'][:12]}`",
        f"- Decision threshold: {threshold['value']:.6g} ({policy})",
    ]
    cv = release["cv_metrics"]
    if "roc_auc" in cv:
        spread = f" ± {cv['roc_auc_std']:.3f} (sd)" if "roc_auc_std" in cv else ""
        lines.append(f"- Cross-validated ROC-AUC: {cv['roc_auc']:.3f}{spread}")
    lines += ["", "| test metric | value | 95 % CI |", "|---|---|---|"]
    for key, label in CHANGELOG_METRICS:
        metric = release["test_metrics"][key]
        lines.append(
            f"| {label} | {metric['value']:.3f} | {metric['ci_low']:.3f}–{metric['ci_high']:.3f} |"
        )
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def add_to_changelog(changelog: str, section: str) -> str:
    """Insert a release section after an emptied Unreleased section (Keep a Changelog order).

    Without an Unreleased section the release goes before the first `## ` heading, or at the
    end of the file.
    """
    lines = changelog.splitlines()
    bounds = _unreleased_bounds(lines)
    if bounds is not None:
        start, end = bounds
        head = lines[: start + 1] + [""]
        tail = lines[end:]
    else:
        first = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
        head, tail = lines[:first], lines[first:]
    while head and not head[-1].strip():
        head.pop()
    text = "\n".join(head) + "\n\n" + section
    if tail:
        text += "\n" + "\n".join(tail) + "\n"
    return text


# ---------------------------------------------------------------- steps with undo


@dataclass(frozen=True)
class Step:
    """One effect of a release and how to take it back."""

    name: str
    apply: Callable[[], object]
    undo: Callable[[], object]


def apply_all(steps: Sequence[Step]) -> None:
    """Apply steps in order; on a failure undo the applied ones in reverse, then raise
    ReleaseError naming the failed step (the original error is its __cause__).

    An undo that itself fails is reported on stderr, naming the step, so a person can finish
    the clean-up.
    """
    applied: list[Step] = []
    try:
        for step in steps:
            step.apply()
            applied.append(step)
    except BaseException as error:
        for done in reversed(applied):
            try:
                done.undo()
            except Exception as undo_error:  # noqa: BLE001 - keep undoing the rest
                print(f"release: could not undo '{done.name}': {undo_error}", file=sys.stderr)
        if not isinstance(error, Exception):
            raise
        failed = steps[len(applied)].name
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ReleaseError(
            f"'{failed}' failed ({detail}); the {len(applied)} step(s) before it were undone"
        ) from error


# ---------------------------------------------------------------- I/O: git, DVC, MLflow


def _run(command: Sequence[str], root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), cwd=root, capture_output=True, text=True)


def _git(root: Path, *args: str) -> str:
    result = _run(["git", *args], root)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ReleaseError(f"git {' '.join(args)} failed: {detail[-1] if detail else '?'}")
    return result.stdout


def check_git_clean(root: Path) -> None:
    """Refuse a working tree with changes or untracked files, and a missing git identity."""
    if _run(["git", "rev-parse", "--verify", "-q", "HEAD"], root).returncode != 0:
        raise ReleaseError(f"{root} is not a git repository with a commit; commit the project")
    changed = [line[3:] for line in _git(root, "status", "--porcelain").splitlines() if line]
    if changed:
        shown = ", ".join(changed[:3]) + (" …" if len(changed) > 3 else "")
        raise ReleaseError(
            f"the git working tree is not clean ({len(changed)} changed or untracked: {shown}); "
            "commit or stash them, then release"
        )
    if _run(["git", "var", "GIT_COMMITTER_IDENT"], root).returncode != 0:
        raise ReleaseError(
            "git has no committer identity; set `git config user.name` and `user.email`"
        )


def _dvc_status(root: Path, *extra: str) -> tuple[int, Any, str]:
    dvc = Path(sys.executable).with_name("dvc")
    command = [str(dvc) if dvc.exists() else "dvc", "status", "--json", *extra]
    result = _run(command, root)
    try:
        payload = json.loads(result.stdout) if result.stdout.strip() else {}
    except json.JSONDecodeError:
        payload = None
    return result.returncode, payload, result.stderr.strip()


def check_pipeline_current(root: Path) -> None:
    """Refuse when `dvc status` reports a changed stage or output."""
    code, status, error = _dvc_status(root)
    if code != 0 or status is None:
        raise ReleaseError(f"`dvc status` failed ({_last_line(error)}); fix DVC, then release")
    if status:
        stages = ", ".join(sorted(status)[:4])
        raise ReleaseError(
            f"the pipeline is not up to date (dvc status: {stages}); "
            "run `make run`, commit dvc.lock and reports/, then release"
        )


def check_outputs_pushed(root: Path) -> None:
    """Refuse when the DVC remote lacks any cached output (or no remote is configured)."""
    code, status, error = _dvc_status(root, "--cloud")
    if code != 0 or status is None:
        if "no remote" in error.lower():
            raise ReleaseError(
                "no DVC remote is configured; add one (`dvc remote add -d NAME URL`), "
                "then `make push`"
            )
        raise ReleaseError(f"`dvc status --cloud` failed ({_last_line(error)}); fix the remote")
    missing = sorted(path for path, state in status.items() if state != "deleted")
    # "deleted" = in the remote but not in the cache; anything else is not in the remote.
    if missing:
        shown = ", ".join(missing[:3]) + (" …" if len(missing) > 3 else "")
        raise ReleaseError(
            f"{len(missing)} output(s) are not in the DVC remote ({shown}); run `make push`"
        )


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI, else the project's store `sqlite:///<root>/mlflow.db`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root.resolve()}/mlflow.db"


def mlflow_client(uri: str, root: Path) -> Any:
    """An MlflowClient for an existing store; never creates an empty one."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise ReleaseError(
                f"no MLflow tracking store at {path}; run `make run` first "
                "(it trains and registers the model) or set MLFLOW_TRACKING_URI"
            )
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_registered_models(max_results=1)
    except Exception as error:  # noqa: BLE001 - any store failure is the same refusal
        raise ReleaseError(
            f"cannot use the MLflow tracking store {uri} ({_last_line(str(error))}); "
            "start it or set MLFLOW_TRACKING_URI"
        ) from None
    return client


def registered_version_for(
    client: Any, name: str, model_md5: str, metadata_md5: str | None = None
) -> str:
    """The registered version of `name` for this model file: the newest one whose run has
    this metadata md5 when the runs record one, else the newest with the model md5."""
    versions = sorted(
        client.search_model_versions(f"name = '{name}' and tags.{MODEL_HASH_TAG} = '{model_md5}'"),
        key=lambda v: int(v.version),
        reverse=True,
    )
    if not versions:
        raise ReleaseError(
            f"no version of MLflow model {name} has {MODEL_HASH_TAG} {model_md5}; "
            "run `make run` first (it trains and registers the model)"
        )
    if metadata_md5 is None:
        return str(versions[0].version)
    run_hashes = [
        client.get_run(v.run_id).data.tags.get(METADATA_HASH_TAG) if v.run_id else None
        for v in versions
    ]
    for version, run_hash in zip(versions, run_hashes, strict=True):
        if run_hash == metadata_md5:
            return str(version.version)
    if any(run_hashes):
        raise ReleaseError(
            f"no version of MLflow model {name} has {MODEL_HASH_TAG} {model_md5} with "
            f"{METADATA_HASH_TAG} {metadata_md5} (another threshold); run `make run` first"
        )
    return str(versions[0].version)


def current_alias(client: Any, name: str, alias: str) -> str | None:
    """The version `alias` points at, or None."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:  # noqa: BLE001 - MLflow raises a generic error for a missing alias
        return None


# ---------------------------------------------------------------- the release


def _read_json(root: Path, name: str) -> Any:
    try:
        return json.loads((root / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReleaseError(f"{name} not found; run `make run` (or `dvc pull`)") from None
    except json.JSONDecodeError:
        raise ReleaseError(f"{name} is not valid JSON; run `make run`") from None


def _restore(path: Path, previous: str | None) -> Callable[[], None]:
    def undo() -> None:
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            _write_atomic(path, previous)

    return undo


def _write_atomic(path: Path, text: str) -> None:
    from stroke_risk.io import write_text

    write_text(path, text)


# ---------------------------------------------------------------- signing (stroke_risk/signing.py)

SERVING_MODEL_PATH = "models/serving_model.npz"


def release_signing_key() -> Any:
    """The private key the release signs with ($STROKE_RELEASE_KEY or the default path);
    ReleaseError (one line, with the keygen command) when it is missing or unusable."""
    from stroke_risk.signing import SigningError, load_private_key, release_key_path

    try:
        return load_private_key(release_key_path())
    except SigningError as error:
        raise ReleaseError(str(error)) from None


def release_signature(root: Path, version: str, private_key: Any) -> dict[str, str]:
    """The ``signature`` entry of the release record: the serving artifact and metadata
    (checked current against dvc.lock before this runs) signed for this version."""
    from stroke_risk.signing import sign_release

    return sign_release(
        version=version,
        serving_model=(root / SERVING_MODEL_PATH).read_bytes(),
        metadata=(root / METADATA_PATH).read_bytes(),
        private_key=private_key,
    )


def release(version_text: str, *, root: Path, today: dt.date | None = None) -> dict[str, Any]:
    """Check everything, then record, tag and promote as one unit; returns the record."""
    root = root.resolve()
    version = parse_version(version_text)
    signing_key = release_signing_key()
    check_git_clean(root)
    tags = _git(root, "tag", "--list").split()
    releases_path, changelog_path = root / RELEASES_FILE, root / CHANGELOG_FILE
    releases_text = releases_path.read_text() if releases_path.exists() else None
    releases = read_releases(releases_text) if releases_text is not None else []
    try:
        lock = yaml.safe_load((root / "dvc.lock").read_text())
    except FileNotFoundError:
        raise ReleaseError("dvc.lock not found; run `make run` and commit dvc.lock") from None
    model_md5 = model_md5_from_lock(lock or {})
    metadata_md5 = locked_md5(lock or {}, METADATA_PATH)
    # dvc.lock names the model only when the pipeline is current, so that comes first.
    check_pipeline_current(root)
    check_release_is_new(
        version=version,
        model_md5=model_md5,
        metadata_md5=metadata_md5,
        releases=releases,
        tags=tags,
    )
    check_outputs_pushed(root)
    params = yaml.safe_load((root / "params.yaml").read_text()) or {}
    registered_model = (params.get("mlflow") or {}).get("registered_model", ARTIFACT)
    client = mlflow_client(tracking_uri(root), root)
    registry_version = registered_version_for(client, registered_model, model_md5, metadata_md5)
    summary = _read_json(root, "reports/data_summary.json")
    record = build_release(
        version=version,
        model_md5=model_md5,
        registry_version=registry_version,
        source_commit=_git(root, "rev-parse", "HEAD").strip(),
        released_on=today or dt.date.today(),
        evaluation=_read_json(root, "reports/evaluation.json"),
        metrics=_read_json(root, "reports/metrics.json"),
        metadata=_read_json(root, "models/model_metadata.json"),
        data_name=str(
            summary.get("known_dataset")
            or summary.get("source")
            or (params.get("data") or {}).get("name", "unknown")
        ),
        registered_model=registered_model,
        metadata_md5=metadata_md5,
    )
    record["signature"] = release_signature(root, version, signing_key)
    changelog_text = changelog_path.read_text() if changelog_path.exists() else None
    changelog = changelog_text or "# Changelog\n\n" + UNRELEASED_HEADING + "\n"
    section = changelog_section(record, unreleased_notes(changelog))
    new_changelog = add_to_changelog(changelog, section)
    new_releases = json.dumps([record, *releases], indent=2, sort_keys=True) + "\n"
    head = _git(root, "rev-parse", "HEAD").strip()
    stage_tag = next_stage_tag(tags)
    previous_alias = current_alias(client, registered_model, STAGE)

    def write_files() -> None:
        _write_atomic(releases_path, new_releases)
        _write_atomic(changelog_path, new_changelog)

    def undo_files() -> None:
        _restore(releases_path, releases_text)()
        _restore(changelog_path, changelog_text)()

    def commit() -> None:
        _git(root, "add", RELEASES_FILE, CHANGELOG_FILE)
        _git(root, "commit", "-q", "-m", f"Release {ARTIFACT} {version}")

    def move_alias() -> None:
        client.set_registered_model_alias(registered_model, STAGE, registry_version)

    def restore_alias() -> None:
        if previous_alias is None:
            client.delete_registered_model_alias(registered_model, STAGE)
        else:
            client.set_registered_model_alias(registered_model, STAGE, previous_alias)

    message = f"Registering artifact {ARTIFACT} version v{version}"
    apply_all(
        [
            Step("write CHANGELOG.md and releases.json", write_files, undo_files),
            Step("commit the release", commit, lambda: _git(root, "reset", "-q", head)),
            Step(
                f"tag {record['tag']}",
                lambda: _git(root, "tag", "-a", record["tag"], "-m", message),
                lambda: _git(root, "tag", "-d", record["tag"]),
            ),
            Step(
                f"tag {stage_tag}",
                lambda: _git(
                    root,
                    "tag",
                    "-a",
                    stage_tag,
                    "-m",
                    f"Assigning stage {STAGE} to artifact {ARTIFACT} version v{version}",
                ),
                lambda: _git(root, "tag", "-d", stage_tag),
            ),
            Step(f"move @{STAGE}", move_alias, restore_alias),
        ]
    )
    record["stage_tag"] = stage_tag
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", help="semantic version of the release, e.g. 1.2.0")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project directory")
    args = parser.parse_args(argv)
    try:
        record = release(args.version, root=args.root)
    except ReleaseError as error:
        print(f"release refused: {error}", file=sys.stderr)
        return 1
    print(
        f"released {record['registered_model']} {record['version']}: model md5 "
        f"{record[MODEL_HASH_TAG]}, MLflow version {record['registry_version']} is "
        f"@{STAGE}; tags {record['tag']} and {record['stage_tag']}; "
        f"{CHANGELOG_FILE} and {RELEASES_FILE} committed"
    )
    print(f"publish it: git push origin HEAD {record['tag']} {record['stage_tag']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
