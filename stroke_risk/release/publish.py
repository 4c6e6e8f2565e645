"""Release the trained model: gate it, tag the revision, promote it in MLflow, record it.

    python -m stroke_risk.commands.release release 1.2.0 [--override REASON] [--notes TEXT]
    python -m stroke_risk.commands.release rollback [--to 1.1.0] [--reason TEXT]
    python -m stroke_risk.commands.release history

`release` (what `make release VERSION=1.2.0` runs; `python -m stroke_risk.commands.release 1.2.0` is
short for it) refuses unless the git working tree is clean, `dvc status` is clean, every output
is in the DVC remote and every release gate of conf/release/gates.yaml passes on the held-out
test split (stroke_risk/release/gates.py; each failed gate is one line; `--override REASON`
releases anyway and records why). It then, as one unit (a failure undoes the steps already
taken):

1. records the release in `releases.json` (machine-readable, read by the service; with the
   ed25519 signature of the serving artifact and metadata, stroke_risk/release/signing.py, made with
   the key at $STROKE_RELEASE_KEY or ~/.config/stroke-risk/release.key), in a
   `CHANGELOG.md` section (version, model md5, test metrics with 95 % CIs, threshold, gates)
   and as one line appended to `releases_audit.jsonl` (the alias move: from, to, when, who,
   why — MLflow keeps no history of aliases), and commits the three;
2. tags that commit the way GTO (DVC's model registry) reads it: `stroke-risk@v1.2.0`
   registers the version, `stroke-risk#production#N` assigns it the production stage;
3. moves the MLflow alias `@production` to the registered version whose `model_md5` tag is the
   md5 of `models/model.joblib` recorded in dvc.lock.

`release ... --model updated` (`make release VERSION=1.2.0 MODEL=updated`) releases the update
stage's models/updated/ instead: refused when the change-control plan kept the model; gated on
the update's held-out outcome labels (reports/outcomes/update_holdout.json and the rows behind
it, rerun here; the same gate functions, @production paired with the update on those
patients); registered in MLflow
(pyfunc) once the gates pass; its record holds an ``update`` block (README "Outcome labels").

`rollback` moves `@production` back to the previous release's MLflow version, recorded and
tagged the same way (GTO: unassign the current version, assign the target). `history` prints
the audit trail.

Every refusal is one line naming the problem and the fix. Nothing is pushed: the command
prints the `git push` line to publish the tags.

The service reads releases.json through `stroke_risk.release.records` (re-exported here), which
imports no MLflow, DVC or numpy even inside functions.
"""

from __future__ import annotations

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

import pandas as pd
import yaml

from stroke_risk import paths
from stroke_risk.evaluation.metrics import rounded
from stroke_risk.evaluation.thresholds import THRESHOLD_POLICIES, policy_setting
from stroke_risk.io import load_params
from stroke_risk.release.gates import (
    GATES_FILE,
    GateResult,
    evaluation_gates,
    failed,
    held_out_runs,
    load_gates,
    production_gate,
)

# The read side of releases.json lives in release_file (standard library only, for the
# service); re-exported here for the release command and its callers.
from stroke_risk.release.records import (
    METADATA_HASH_TAG,
    MODEL_HASH_TAG,
    RELEASES_FILE,
    ReleaseError,
    read_releases,
    release_for_model,
)
from stroke_risk.release.records import same_revision as _same_revision
from stroke_risk.tracking.mlflow_runs import log_update_revision, project_tracking_uri
from stroke_risk.updating.collect import read_outcomes, rows_of_version
from stroke_risk.updating.holdout import decision_and_evidence
from stroke_risk.updating.settings import protocol_from_params, updating_params

__all__ = ["ReleaseError", "read_releases", "release", "release_for_model"]

ARTIFACT = "stroke-risk"
STAGE = "production"
MODEL_PATH = paths.MODEL
TRAIN_STAGE = "train"
UPDATE_STAGE = "update"
CHANGELOG_FILE = "CHANGELOG.md"
METADATA_PATH = paths.MODEL_METADATA
UNRELEASED_HEADING = "## [Unreleased]"
# Append-only JSON Lines: every move of the `@production` alias (release, rollback).
AUDIT_FILE = "releases_audit.jsonl"
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


def next_stage_tag(existing_tags: Sequence[str], stage: str = STAGE, unassign: bool = False) -> str:
    """The next GTO stage tag: `stroke-risk#production#N` assigns, `stroke-risk#production!#N`
    unassigns; N is one past the largest of either kind (GTO orders stage events by N)."""
    pattern = re.compile(rf"^{re.escape(ARTIFACT)}#{re.escape(stage)}!?#(\d+)$")
    numbers = [int(match[1]) for tag in existing_tags if (match := pattern.match(tag))]
    mark = "!" if unassign else ""
    return f"{ARTIFACT}#{stage}{mark}#{max(numbers, default=0) + 1}"


@dataclass(frozen=True)
class ReleasedModel:
    """Which model a release publishes: train's, or the update stage's (MODEL=updated)."""

    name: str
    stage: str  # the dvc.lock stage that writes its files
    model: str
    serving_model: str
    metadata: str

    @property
    def is_update(self) -> bool:
        return self.stage == UPDATE_STAGE


RELEASED_MODELS = {
    "train": ReleasedModel(
        "train", TRAIN_STAGE, paths.MODEL, paths.SERVING_MODEL, paths.MODEL_METADATA
    ),
    "updated": ReleasedModel(
        "updated",
        UPDATE_STAGE,
        paths.UPDATED_MODEL,
        paths.UPDATED_SERVING_MODEL,
        paths.UPDATED_MODEL_METADATA,
    ),
}


def released_model(name: str) -> ReleasedModel:
    """The model MODEL=name releases; a one-line ReleaseError for another name."""
    try:
        return RELEASED_MODELS[name]
    except KeyError:
        raise ReleaseError(
            f"MODEL={name!r} is not a releasable model; use one of {', '.join(RELEASED_MODELS)}"
        ) from None


def locked_md5(lock: Mapping[str, Any], path: str, stage_name: str = TRAIN_STAGE) -> str | None:
    """The md5 dvc.lock records for `path` as an output of `stage_name`, or None."""
    stage = (lock.get("stages") or {}).get(stage_name) or {}
    for out in stage.get("outs") or []:
        if isinstance(out, Mapping) and out.get("path") == path and out.get("md5"):
            return str(out["md5"])
    return None


def model_md5_from_lock(
    lock: Mapping[str, Any], target: ReleasedModel = RELEASED_MODELS["train"]
) -> str:
    """The md5 dvc.lock records for the target's model file as an output of its stage."""
    found = locked_md5(lock, target.model, target.stage)
    if found:
        return found
    raise ReleaseError(
        f"dvc.lock records no md5 for {target.model} (stage {target.stage}); "
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
            f"{paths.EVALUATION} lacks {absent}; run `make run` and commit the reports"
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


def changelog_section(release: Mapping[str, Any], notes: str) -> str:
    """The Markdown section of one release; `notes` (Markdown) end it when given."""
    threshold = release["threshold"]
    policy = threshold.get("policy", "?")
    known = THRESHOLD_POLICIES.get(policy)
    if known is not None and known.setting is not None:
        policy = f"{policy}, {known.setting_label} {policy_setting(known, threshold)}"
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
    update = release.get("update")
    if update:
        held = update["held_out"]
        base = f"release {update['base_release']}" if update["base_release"] else "unreleased"
        lines += [
            f"- Update of the model md5 `{update['base_model_md5']}` ({base}) by "
            f"{update['method'].replace('_', ' ')}: log-odds = {update['intercept']:.4f} + "
            f"{update['slope']:.4f} x base log-odds, fitted on {update['labels']} outcome "
            f"labels ({update['events']} events)",
            f"- Judged on {held['labels']} held-out labels ({held['events']} events) as the fit "
            f"on the other {held['judged_fit_labels']} ({held['judged_intercept']:.4f} + "
            f"{held['judged_slope']:.4f} x base log-odds): the released fit has seen every label",
        ]
    split = "held-out" if update else "test"
    lines += ["", f"| {split} metric | value | 95 % CI |", "|---|---|---|"]
    for key, label in CHANGELOG_METRICS:
        metric = release["test_metrics"][key]
        lines.append(
            f"| {label} | {metric['value']:.3f} | {metric['ci_low']:.3f}–{metric['ci_high']:.3f} |"
        )
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def add_to_changelog(changelog: str, section: str) -> str:
    """Insert a section as the newest entry, below the Unreleased section (Keep a Changelog
    order), leaving the Unreleased notes where they are.

    The Unreleased notes are not the release's: this project's CHANGELOG.md declares that a
    release section holds only what the release command writes (and its --notes), so notes
    about the project, not the model, never move into a model release. Without an Unreleased
    section the entry goes before the first `## ` heading, or at the end of the file.
    """
    lines = changelog.splitlines()
    bounds = _unreleased_bounds(lines)
    if bounds is not None:
        insert_at = bounds[1]
    else:
        insert_at = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    head, tail = lines[:insert_at], lines[insert_at:]
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


# ---------------------------------------------------------------- gates and the audit trail


class GatesFailed(ReleaseError):
    """Release gates failed and no override was given; `failures` are one line each."""

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        super().__init__(
            f"{len(self.failures)} release gate(s) failed ({GATES_FILE}); improve the model, "
            'or release anyway with OVERRIDE="reason" (--override; recorded in CHANGELOG.md and '
            f"{AUDIT_FILE})"
        )


def production_run(root: Path, releases: Sequence[Mapping[str, Any]], version: str) -> Any:
    """The comparison Run of the release whose MLflow version `@production` points at, read
    from its source commit, and its label; None when no release record has that version."""
    from stroke_risk.evaluation.comparison import ComparisonError, load_run
    from stroke_risk.run_files import git_reader

    record = next((r for r in releases if str(r.get("registry_version")) == version), None)
    if record is None:
        return None, f"MLflow version {version} (no release in {RELEASES_FILE})"
    label = f"release {record['version']} (MLflow version {version})"
    try:
        return load_run(label, git_reader(root, str(record["source_commit"]))), label
    except ComparisonError:
        return None, label


def check_release_gates(
    root: Path,
    *,
    registered_model: str,
    production_version: str | None,
    releases: Sequence[Mapping[str, Any]],
    override: str | None,
) -> list[GateResult]:
    """Every gate of conf/release/gates.yaml on the workspace's test results; raises
    GatesFailed naming each failure unless `override` gives a reason."""
    from stroke_risk.evaluation.comparison import load_run
    from stroke_risk.run_files import directory_reader

    gates = load_gates(root)
    results = evaluation_gates(gates, _read_json(root, paths.EVALUATION))
    if gates.production is not None:
        candidate = load_run("candidate", directory_reader(root))
        production, label = (None, None)
        if production_version is not None:
            production, label = production_run(root, releases, production_version)
            if production is None:
                results.append(
                    GateResult(
                        "not worse than @production",
                        False,
                        f"@{STAGE} is {label}, whose test predictions cannot be read; "
                        "release over it only with a reason",
                    )
                )
        if production is not None or production_version is None:
            results.append(production_gate(gates.production, candidate, production, label))
    return refuse_failed_gates(results, override)


def refuse_failed_gates(results: list[GateResult], override: str | None) -> list[GateResult]:
    """The results, or GatesFailed naming each failure when no override reason is given."""
    if failed(results) and not override:
        raise GatesFailed([result.line for result in failed(results)])
    return results


# ---------------------------------------------------------------- releasing an update


@dataclass(frozen=True)
class UpdateToRelease:
    """What the update stage wrote for an accepted update: its held-out evidence
    (stroke_risk/updating/holdout.py) and the updated model's metadata."""

    evidence: dict[str, Any]  # reports/outcomes/update_holdout.json
    predictions: pd.DataFrame  # per held-out patient, rerun (held_out_rows)
    metadata: dict[str, Any]  # models/updated/model_metadata.json

    @property
    def base_md5(self) -> str:
        return str(self.metadata["update"]["base_model_version"])


def read_update(root: Path) -> UpdateToRelease:
    """The accepted update in the workspace; a one-line ReleaseError when the plan kept the
    model (models/updated/ is then train's model: nothing to release beyond it)."""
    metadata = _read_json(root, paths.UPDATED_MODEL_METADATA)
    evidence = _read_json(root, paths.UPDATE_HOLDOUT)
    method = (metadata.get("update") or {}).get("method", "keep")
    if method == "keep" or not evidence.get("available"):
        reason = str(evidence.get("reason") or "no update block in the metadata")
        raise ReleaseError(
            f"the update stage kept the model ({reason}), so {paths.UPDATED_DIR}/ is train's "
            "model: nothing to release beyond it; release train's with `make release "
            "VERSION=...` (no MODEL)"
        )
    predictions = held_out_rows(root, evidence)
    return UpdateToRelease(evidence=evidence, predictions=predictions, metadata=metadata)


def held_out_rows(root: Path, evidence: Mapping[str, Any]) -> pd.DataFrame:
    """The update's held-out patients (label, update's and base model's probability), rerun
    from the outcome labels here by the update stage's own sequence: patient data are never
    written, so an update is released where its labels were collected. A one-line
    ReleaseError when they are not here or no longer give the figures the stage wrote."""
    base_version = str((evidence.get("base") or {}).get("model_version"))
    outcomes = read_outcomes(root / paths.OUTCOMES_DIR)
    rows, _ = rows_of_version(outcomes, base_version)
    if rows.empty:
        raise ReleaseError(
            f"no outcome labels of the base model {base_version} in {paths.OUTCOMES_DIR}/ (patient "
            "data, never pushed): release an update where its labels were collected"
        )
    params = load_params(root / "params.yaml")
    plan = updating_params(params)
    _, rerun = decision_and_evidence(
        rows["label"].to_numpy(),
        rows["probability"].to_numpy(),
        _read_json(root, paths.MODEL_METADATA),
        protocol_from_params(params),
        base_model_version=base_version,
        n_resamples=plan.bootstrap_resamples,
        seed=plan.bootstrap_seed,
    )
    if json.loads(json.dumps(rounded(rerun.document))) != evidence:
        raise ReleaseError(
            f"the outcome labels in {paths.OUTCOMES_DIR}/ no longer give the figures of "
            f"{paths.UPDATE_HOLDOUT}; run `dvc repro update` and commit"
        )
    return rerun.predictions


def check_update_gates(
    root: Path,
    update: UpdateToRelease,
    *,
    production_version: str | None,
    releases: Sequence[Mapping[str, Any]],
    override: str | None,
) -> list[GateResult]:
    """Every gate of conf/release/gates.yaml on the update's held-out labels: the same gate
    functions as for train's model, on the same shape of evidence. @production must be the
    base model the update recalibrated: it scored the held-out patients (their logged
    probabilities), so the paired bootstrap compares the two models on the same patients."""
    gates = load_gates(root)
    results = evaluation_gates(
        gates, update.evidence, split="held-out", source=paths.UPDATE_HOLDOUT
    )
    if gates.production is None:
        return refuse_failed_gates(results, override)
    base_release = next((r for r in releases if r[MODEL_HASH_TAG] == update.base_md5), None)
    label = (
        f"release {base_release['version']} (the base, md5 {update.base_md5})"
        if base_release
        else f"the unreleased base (md5 {update.base_md5})"
    )
    production = next(
        (r for r in releases if str(r.get("registry_version")) == production_version), None
    )
    if production_version is not None and (
        production is None or production[MODEL_HASH_TAG] != update.base_md5
    ):
        now = f"release {production['version']}" if production else "an unrecorded model"
        results.append(
            GateResult(
                "not worse than @production",
                False,
                f"@{STAGE} is {now} (MLflow version {production_version}), not the base the "
                f"update recalibrated (md5 {update.base_md5}), which scored the held-out "
                "patients; release over it only with a reason",
            )
        )
        return refuse_failed_gates(results, override)
    candidate, base = held_out_runs(
        update.predictions,
        threshold=float(update.evidence["threshold"]["value"]),
        base_threshold=float(update.evidence["base"]["threshold"]),
    )
    results.append(production_gate(gates.production, candidate, base, label))
    return refuse_failed_gates(results, override)


def update_record(update: UpdateToRelease, releases: Sequence[Mapping[str, Any]]) -> dict:
    """The `update` block of a release record: what was updated, how, on which labels, and
    the held-out figures the gates judged (of the fit without the held-out labels)."""
    block = update.metadata["update"]
    evidence = update.evidence
    base_release = next((r for r in releases if r[MODEL_HASH_TAG] == update.base_md5), None)
    return {
        "base_model_md5": update.base_md5,
        "base_release": base_release["version"] if base_release else None,
        "method": block["method"],
        "intercept": block["intercept"],
        "slope": block["slope"],
        "labels": block["labels"],
        "events": block["events"],
        "base_decision_threshold": block["base_decision_threshold"],
        "held_out": {
            "labels": evidence["labels"],
            "events": evidence["events"],
            "judged_fit_labels": evidence["fitted_on_labels"],
            "judged_intercept": evidence["judged_recalibration"]["intercept"],
            "judged_slope": evidence["judged_recalibration"]["slope"],
            "calibration_slope": dict(evidence["calibration"]["test"]["calibration_slope"]),
        },
    }


def update_evaluation(update: UpdateToRelease) -> dict[str, Any]:
    """The held-out evidence as build_release reads an evaluation: its figures, with the
    released model's own threshold (the base threshold mapped by the released fit)."""
    return {
        **update.evidence,
        "threshold": {
            "value": float(update.metadata["decision_threshold"]),
            "policy": "base threshold mapped by the update",
        },
    }


def register_update(
    root: Path,
    target: ReleasedModel,
    update: UpdateToRelease,
    *,
    client: Any,
    registered_model: str,
    experiment: str,
    model_md5: str,
    metadata_md5: str | None,
) -> str:
    """The MLflow version of the updated model, registered (pyfunc) on its first release."""
    try:
        return registered_version_for(client, registered_model, model_md5, metadata_md5)
    except ReleaseError:
        pass
    block = update.metadata["update"]
    try:
        return log_update_revision(
            uri=project_tracking_uri(root),
            model=root / target.model,
            metadata=root / target.metadata,
            evidence=root / paths.UPDATE_HOLDOUT,
            experiment=experiment,
            registered_model=registered_model,
            tags={
                "base_model_md5": update.base_md5,
                "update_method": str(block["method"]),
                "model_family": str(update.metadata.get("model_family", "unknown")),
            },
            params={
                "update_method": block["method"],
                "update_intercept": block["intercept"],
                "update_slope": block["slope"],
                "update_labels": block["labels"],
                "update_events": block["events"],
                "decision_threshold": update.metadata["decision_threshold"],
            },
            metrics={"held_out": update.evidence["test"]},
        )
    except Exception as error:  # noqa: BLE001 - any store failure is one refusal line
        raise ReleaseError(
            f"registering the updated model in MLflow failed ({_last_line(str(error))}); "
            "check the tracking store"
        ) from None


def release_notes(
    notes: str | None, override: str | None, gate_results: Sequence[GateResult]
) -> str:
    """The Markdown notes of a release section: the gates, an override and its reason, and
    the release's own notes."""
    lines = []
    failures = failed(gate_results)
    if override and failures:
        lines.append(f"- **Released over {len(failures)} failed gate(s)**; reason: {override}")
        lines += [f"  - {result.line}" for result in failures]
    passed = [result for result in gate_results if result.passed]
    if passed:
        lines.append(f"- Gates passed ({GATES_FILE}): " + "; ".join(r.name for r in passed))
    if notes and notes.strip():
        lines.append(notes.strip())
    return "\n".join(lines)


def mover(root: Path) -> str:
    """Who moves an alias: git's committer identity (as the release commit records it,
    GIT_COMMITTER_* included) and the login running the command."""
    import getpass

    ident = _run(["git", "var", "GIT_COMMITTER_IDENT"], root).stdout.strip()
    # "Name <email> 1733150000 +0000": drop the timestamp.
    person = re.sub(r"\s+\d+\s+[+-]\d{4}$", "", ident) or "?"
    try:
        login = os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        login = "?"
    return f"{person} (user {login})"


def alias_move(
    *,
    action: str,
    registered_model: str,
    from_version: str | None,
    to_version: str,
    release_version: str,
    why: str,
    who: str,
    gates: Sequence[GateResult] = (),
    overridden: bool = False,
    when: dt.datetime | None = None,
) -> dict[str, Any]:
    """One audit-trail entry: an MLflow alias moved (MLflow keeps no history of it)."""
    moment = when or dt.datetime.now(dt.UTC)
    return {
        "when": moment.isoformat(timespec="seconds"),
        "who": who,
        "action": action,
        "registered_model": registered_model,
        "alias": STAGE,
        "from": from_version,
        "to": to_version,
        "release": release_version,
        "why": why,
        "overridden": overridden,
        "failed_gates": [result.line for result in failed(gates)],
    }


def read_audit(text: str, source: str = AUDIT_FILE) -> list[dict[str, Any]]:
    """The audit trail's entries, oldest first (JSON Lines)."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise ReleaseError(
                f"{source} line {number} is not JSON; restore the file from git"
            ) from None
        entries.append(entry)
    return entries


def append_audit(text: str, entry: Mapping[str, Any]) -> str:
    """The audit trail with `entry` appended: earlier lines are kept byte for byte (append-
    only, so `git diff` of a release shows only the new line)."""
    read_audit(text)
    prefix = text if not text or text.endswith("\n") else text + "\n"
    return prefix + json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"


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


# ------------------------------------------------- signing (stroke_risk/release/signing.py)

SERVING_MODEL_PATH = paths.SERVING_MODEL


def release_signing_key() -> Any:
    """The private key the release signs with ($STROKE_RELEASE_KEY or the default path);
    ReleaseError (one line, with the keygen command) when it is missing or unusable."""
    from stroke_risk.release.signing import SigningError, load_private_key, release_key_path

    try:
        return load_private_key(release_key_path())
    except SigningError as error:
        raise ReleaseError(str(error)) from None


def release_signature(
    root: Path,
    version: str,
    private_key: Any,
    target: ReleasedModel = RELEASED_MODELS["train"],
) -> dict[str, str]:
    """The ``signature`` entry of the release record: the released model's serving artifact
    and metadata (checked current against dvc.lock before this runs) signed for this version."""
    from stroke_risk.release.signing import sign_release

    return sign_release(
        version=version,
        serving_model=(root / target.serving_model).read_bytes(),
        metadata=(root / target.metadata).read_bytes(),
        private_key=private_key,
    )


def release(
    version_text: str,
    *,
    root: Path,
    today: dt.date | None = None,
    override: str | None = None,
    notes: str | None = None,
    model: str = "train",
) -> dict[str, Any]:
    """Check everything (release gates included), then record, tag and promote as one unit;
    returns the record.

    `override` is the reason to release over failed gates (recorded in CHANGELOG.md and the
    audit trail); `notes` are the release's own notes for its CHANGELOG section. `model`
    "updated" releases the update stage's models/updated/ (README "Outcome labels"), gated
    on its held-out labels; the default is train's model, gated on the test split.
    """
    root = root.resolve()
    version = parse_version(version_text)
    target = released_model(model)
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
    model_md5 = model_md5_from_lock(lock or {}, target)
    metadata_md5 = locked_md5(lock or {}, target.metadata, target.stage)
    # dvc.lock names the model only when the pipeline is current, so that comes first.
    check_pipeline_current(root)
    update = read_update(root) if target.is_update else None
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
    client = mlflow_client(project_tracking_uri(root), root)
    summary = _read_json(root, paths.DATA_SUMMARY)
    data_name = str(
        summary.get("known_dataset")
        or summary.get("source")
        or (params.get("data") or {}).get("name", "unknown")
    )
    if update is None:
        registry_version = registered_version_for(client, registered_model, model_md5, metadata_md5)
        evaluation, metrics = _read_json(root, paths.EVALUATION), _read_json(root, paths.METRICS)
    previous_alias = current_alias(client, registered_model, STAGE)
    if update is not None:
        # The gates first: a refused update is not registered in MLflow.
        gate_results = check_update_gates(
            root,
            update,
            production_version=previous_alias,
            releases=releases,
            override=override,
        )
        registry_version = register_update(
            root,
            target,
            update,
            client=client,
            registered_model=registered_model,
            experiment=str((params.get("mlflow") or {}).get("experiment", ARTIFACT)),
            model_md5=model_md5,
            metadata_md5=metadata_md5,
        )
        evaluation, metrics = update_evaluation(update), {}
        data_name = (
            f"{update.evidence['split']} ({update.evidence['labels']} of "
            f"{update.metadata['update']['labels']} outcome labels of {paths.OUTCOMES_DIR})"
        )
    record = build_release(
        version=version,
        model_md5=model_md5,
        registry_version=registry_version,
        source_commit=_git(root, "rev-parse", "HEAD").strip(),
        released_on=today or dt.date.today(),
        evaluation=evaluation,
        metrics=metrics,
        metadata=_read_json(root, target.metadata),
        data_name=data_name,
        registered_model=registered_model,
        metadata_md5=metadata_md5,
    )
    if update is not None:
        record["update"] = update_record(update, releases)
    record["signature"] = release_signature(root, version, signing_key, target)
    if update is None:
        gate_results = check_release_gates(
            root,
            registered_model=registered_model,
            production_version=previous_alias,
            releases=releases,
            override=override,
        )
    record["gates"] = [result.as_record() for result in gate_results]
    # An override counts only when a gate failed; otherwise it is just the release's reason.
    overridden = bool(override) and bool(failed(gate_results))
    if overridden:
        record["override"] = override
    changelog_text = changelog_path.read_text() if changelog_path.exists() else None
    changelog = changelog_text or "# Changelog\n\n" + UNRELEASED_HEADING + "\n"
    section = changelog_section(record, release_notes(notes, override, gate_results))
    new_changelog = add_to_changelog(changelog, section)
    new_releases = json.dumps([record, *releases], indent=2, sort_keys=True) + "\n"
    audit_path = root / AUDIT_FILE
    audit_text = audit_path.read_text(encoding="utf-8") if audit_path.exists() else None
    new_audit = append_audit(
        audit_text or "",
        alias_move(
            action="release",
            registered_model=registered_model,
            from_version=previous_alias,
            to_version=registry_version,
            release_version=version,
            why=override or f"release {version}: every gate passed",
            who=mover(root),
            gates=gate_results,
            overridden=overridden,
        ),
    )
    head = _git(root, "rev-parse", "HEAD").strip()
    stage_tag = next_stage_tag(tags)

    def write_files() -> None:
        _write_atomic(releases_path, new_releases)
        _write_atomic(changelog_path, new_changelog)
        _write_atomic(audit_path, new_audit)

    def undo_files() -> None:
        _restore(releases_path, releases_text)()
        _restore(changelog_path, changelog_text)()
        _restore(audit_path, audit_text)()

    def commit() -> None:
        _git(root, "add", RELEASES_FILE, CHANGELOG_FILE, AUDIT_FILE)
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


def rollback_target(
    releases: Sequence[Mapping[str, Any]], current: str | None, to: str | None
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any]]:
    """(the release `@production` is now, the release to move it to).

    Without `to`, the target is the newest release older than the current one whose MLflow
    version differs (the previous release). Refusals are one-line ReleaseErrors.
    """
    if current is None:
        raise ReleaseError(f"nothing is @{STAGE}; there is no release to roll back")
    index = next(
        (i for i, r in enumerate(releases) if str(r.get("registry_version")) == current), None
    )
    now = None if index is None else releases[index]
    if to is not None:
        version = parse_version(to)
        target = next((r for r in releases if r["version"] == version), None)
        if target is None:
            known = ", ".join(str(r["version"]) for r in releases) or "none"
            raise ReleaseError(f"no release {version} in {RELEASES_FILE} (released: {known})")
        if str(target.get("registry_version")) == current:
            raise ReleaseError(f"release {version} is already @{STAGE}; nothing to roll back")
        return now, target
    if index is None:
        raise ReleaseError(
            f"@{STAGE} is MLflow version {current}, which no release in {RELEASES_FILE} records; "
            "name the release to return to with --to VERSION"
        )
    older = [r for r in releases[index + 1 :] if str(r.get("registry_version")) != current]
    if not older:
        raise ReleaseError(
            f"release {releases[index]['version']} is the first release; there is no earlier "
            "one to roll back to"
        )
    return now, older[0]


def rollback_section(
    *,
    now: Mapping[str, Any] | None,
    target: Mapping[str, Any],
    current: str,
    why: str,
    who: str,
    on: dt.date,
) -> str:
    """The CHANGELOG section of a rollback (an alias move, not a new release)."""
    from_text = f"release {now['version']}" if now else "an unrecorded model"
    return (
        f"## Rollback to [{target['version']}] - {on.isoformat()}\n\n"
        f"- `@{STAGE}` moved from MLflow version {current} ({from_text}) back to version "
        f"{target['registry_version']} (release {target['version']}, md5 "
        f"`{target[MODEL_HASH_TAG]}`, git tag `{target['tag']}`)\n"
        f"- Why: {why}\n- By: {who}\n"
    )


def rollback(
    *, root: Path, to: str | None = None, reason: str | None = None, today: dt.date | None = None
) -> dict[str, Any]:
    """Move `@production` back to the previous release's model version (or to release `to`),
    record the move in the audit trail and CHANGELOG.md, commit both, and tag the GTO stage
    moves (unassign the current release, assign the target). Returns the audit entry."""
    root = root.resolve()
    check_git_clean(root)
    releases_path, changelog_path = root / RELEASES_FILE, root / CHANGELOG_FILE
    releases = read_releases(releases_path.read_text()) if releases_path.exists() else []
    params = yaml.safe_load((root / "params.yaml").read_text()) or {}
    registered_model = (params.get("mlflow") or {}).get("registered_model", ARTIFACT)
    client = mlflow_client(project_tracking_uri(root), root)
    current = current_alias(client, registered_model, STAGE)
    now, target = rollback_target(releases, current, to)
    assert current is not None  # rollback_target refuses otherwise
    who = mover(root)
    why = (reason or "").strip() or "rollback (no reason given)"
    entry = alias_move(
        action="rollback",
        registered_model=registered_model,
        from_version=current,
        to_version=str(target["registry_version"]),
        release_version=str(target["version"]),
        why=why,
        who=who,
    )
    audit_path = root / AUDIT_FILE
    audit_text = audit_path.read_text(encoding="utf-8") if audit_path.exists() else None
    new_audit = append_audit(audit_text or "", entry)
    changelog_text = changelog_path.read_text() if changelog_path.exists() else None
    changelog = changelog_text or "# Changelog\n\n" + UNRELEASED_HEADING + "\n"
    new_changelog = add_to_changelog(
        changelog,
        rollback_section(
            now=now,
            target=target,
            current=current,
            why=why,
            who=who,
            on=today or dt.date.today(),
        ),
    )
    tags = _git(root, "tag", "--list").split()
    head = _git(root, "rev-parse", "HEAD").strip()
    stage_tags: list[tuple[str, str, str]] = []  # (tag, commit-ish, message)
    if now is not None and now["tag"] in tags:
        unassign = next_stage_tag(tags, unassign=True)
        stage_tags.append(
            (
                unassign,
                f"{now['tag']}^{{commit}}",
                f"Unassigning stage {STAGE} from artifact {ARTIFACT} version v{now['version']}",
            )
        )
        tags = [*tags, unassign]
    if target["tag"] in tags:
        assign = next_stage_tag(tags)
        stage_tags.append(
            (
                assign,
                f"{target['tag']}^{{commit}}",
                f"Assigning stage {STAGE} to artifact {ARTIFACT} version v{target['version']}",
            )
        )

    def write_files() -> None:
        _write_atomic(audit_path, new_audit)
        _write_atomic(changelog_path, new_changelog)

    def undo_files() -> None:
        _restore(audit_path, audit_text)()
        _restore(changelog_path, changelog_text)()

    def commit() -> None:
        _git(root, "add", AUDIT_FILE, CHANGELOG_FILE)
        _git(
            root,
            "commit",
            "-q",
            "-m",
            f"Roll back {ARTIFACT} @{STAGE} to {target['version']}: {why}",
        )

    def tag_step(tag: str, commit: str, message: str) -> Step:
        return Step(
            f"tag {tag}",
            lambda: _git(root, "tag", "-a", tag, commit, "-m", message),
            lambda: _git(root, "tag", "-d", tag),
        )

    apply_all(
        [
            Step("write CHANGELOG.md and the audit trail", write_files, undo_files),
            Step("commit the rollback", commit, lambda: _git(root, "reset", "-q", head)),
            *(tag_step(*spec) for spec in stage_tags),
            Step(
                f"move @{STAGE}",
                lambda: client.set_registered_model_alias(
                    registered_model, STAGE, str(target["registry_version"])
                ),
                lambda: client.set_registered_model_alias(registered_model, STAGE, current),
            ),
        ]
    )
    entry["stage_tags"] = [tag for tag, _, _ in stage_tags]
    return entry


def history_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per alias move: when, action, from -> to, release, who, why."""
    return [
        f"{e['when']}  {e['action']:<8} @{e.get('alias', STAGE)} {e.get('from') or '-'} -> "
        f"{e['to']} (release {e['release']})  by {e['who']}: {e['why']}"
        for e in entries
    ]
