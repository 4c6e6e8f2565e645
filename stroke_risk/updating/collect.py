"""Export the labelled predictions of the prediction log as the outcome set, with provenance.

``make collect-labels`` (``python -m stroke_risk.commands.collect_labels``) reads the service's
SQLite prediction log, merges its labelled rows into ``data/outcomes/`` and tracks that
folder with DVC (``data/outcomes.dvc``).

What is exported, and what is not (data minimisation, README "Outcome labels"): per labelled
prediction only its id, when it was scored and labelled, the model version that scored it,
the probability, the decision and the label. No feature values are exported, in either
store mode (raw or binned): validation and recalibration need only the model's probability.
Refitting (method (d) of the plan) needs raw fields and is a training run on a data set
assembled under its own approval, not this export.

These are patient data: the folder is 0700 and each file 0600 (only the owner reads them);
rows older than ``updating.outcome_retention_days`` are dropped at each collection (older
versions stay in the DVC cache until ``dvc gc``). The repository ships the empty set in git
(no patient data), so ``dvc repro`` runs on a fresh clone; the first collection that finds
labels moves the folder from git to DVC (``git rm --cached``, ``dvc add``) and marks
``data/outcomes.dvc`` ``push: false``, so ``dvc push`` never copies labels to the shared
remote unless collect runs with ``--allow-push`` (for a remote approved for patient data).

Rows scored by another model version stay in the set, marked by ``model_version``; the
validate_outcomes and update stages use only the current model's rows and count the rest.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from stroke_risk import paths

OUTCOMES_DIR = Path(paths.OUTCOMES_DIR)
OUTCOMES_FILE = "labelled_predictions.csv"
PROVENANCE_FILE = "provenance.json"
COLUMNS = (
    "prediction_id",
    "created_at",
    "labelled_at",
    "model_version",
    "probability",
    "decision",
    "label",
)
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def empty_outcomes() -> pd.DataFrame:
    """The outcome set with no rows (a fresh clone's)."""
    return pd.DataFrame(
        {
            "prediction_id": pd.Series(dtype=str),
            "created_at": pd.Series(dtype=float),
            "labelled_at": pd.Series(dtype=float),
            "model_version": pd.Series(dtype=str),
            "probability": pd.Series(dtype=float),
            "decision": pd.Series(dtype=int),
            "label": pd.Series(dtype=int),
        }
    )


def read_labelled_predictions(database: Path) -> pd.DataFrame:
    """Every labelled row of the prediction log (opened read-only; no lock is taken)."""
    uri = f"file:{database.resolve()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as connection:
        rows = connection.execute(
            f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE label IS NOT NULL ORDER BY seq"
        ).fetchall()
    if not rows:
        return empty_outcomes()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({"decision": int, "label": int, "probability": float})


def merge_outcomes(
    previous: pd.DataFrame, collected: pd.DataFrame, *, now: float, retention_days: int
) -> pd.DataFrame:
    """previous plus the newly collected rows (one row per prediction id; a row in both is
    taken from collected), without rows scored more than retention_days ago, oldest first."""
    merged = pd.concat([previous, collected], ignore_index=True)
    merged = merged.drop_duplicates("prediction_id", keep="last")
    merged = merged[merged["created_at"] >= now - retention_days * 86400.0]
    return merged.sort_values(["created_at", "prediction_id"]).reset_index(drop=True)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def provenance(
    outcomes: pd.DataFrame, *, source: str, collected_at: float, retention_days: int
) -> dict[str, Any]:
    """Where the set came from and what it holds: window, counts, prevalence per version."""
    versions = {
        str(version): {
            "labels": int(len(rows)),
            "events": int(rows["label"].sum()),
            "prevalence": round(float(rows["label"].mean()), 6),
            "first_scored": _iso(float(rows["created_at"].min())),
            "last_scored": _iso(float(rows["created_at"].max())),
        }
        for version, rows in outcomes.groupby("model_version", sort=True)
    }
    return {
        "source": source,
        "collected_at": _iso(collected_at),
        "retention_days": retention_days,
        "labels": int(len(outcomes)),
        "events": int(outcomes["label"].sum()) if len(outcomes) else 0,
        "prevalence": round(float(outcomes["label"].mean()), 6) if len(outcomes) else None,
        "first_scored": _iso(float(outcomes["created_at"].min())) if len(outcomes) else None,
        "last_scored": _iso(float(outcomes["created_at"].max())) if len(outcomes) else None,
        "model_versions": versions,
        "features_exported": False,
    }


def read_outcomes(directory: Path) -> pd.DataFrame:
    """The collected set (empty when the folder or file does not exist)."""
    path = directory / OUTCOMES_FILE
    if not path.exists():
        return empty_outcomes()
    frame = pd.read_csv(path, dtype={"prediction_id": str, "model_version": str})
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    bad = frame.index[~frame["label"].isin([0, 1])].tolist()
    if bad:
        raise ValueError(f"{path}: row {bad[0] + 2}, column label: must be 0 or 1")
    bad = frame.index[~frame["probability"].between(0, 1)].tolist()
    if bad:
        raise ValueError(f"{path}: row {bad[0] + 2}, column probability: must be in [0, 1]")
    return frame.astype({"label": int, "decision": int, "probability": float})


def rows_of_version(outcomes: pd.DataFrame, model_version: str) -> tuple[pd.DataFrame, int]:
    """(the rows the model version scored, how many rows other versions scored)."""
    mine = outcomes["model_version"] == model_version
    return outcomes[mine].reset_index(drop=True), int((~mine).sum())


def _write_private(path: Path, text: str) -> None:
    """Write text to path atomically as a 0600 file."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, FILE_MODE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(temporary, FILE_MODE)
    os.replace(temporary, path)


def write_outcomes(directory: Path, outcomes: pd.DataFrame, document: Mapping[str, Any]) -> None:
    """The set and its provenance into directory (0700), each file 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, DIRECTORY_MODE)
    _write_private(
        directory / OUTCOMES_FILE,
        outcomes.loc[:, list(COLUMNS)].to_csv(
            index=False, lineterminator="\n", float_format="%.10g"
        ),
    )
    _write_private(
        directory / PROVENANCE_FILE, json.dumps(document, indent=2, sort_keys=True) + "\n"
    )


def set_push(dvc_file: Path, push: bool) -> None:
    """Mark the tracked folder's output push: false (never to a remote) or remove the mark."""
    document = yaml.safe_load(dvc_file.read_text())
    for out in document["outs"]:
        if push:
            out.pop("push", None)
        else:
            out["push"] = False
    dvc_file.write_text(yaml.safe_dump(document, sort_keys=False))


def collect(
    database: Path | None,
    directory: Path,
    *,
    retention_days: int,
    now: float,
) -> dict[str, Any]:
    """Merge the SQLite log's labelled predictions into directory; return the provenance."""
    if database and database.exists():
        return collect_rows(
            read_labelled_predictions(database),
            f"prediction log {database}",
            directory,
            retention_days=retention_days,
            now=now,
        )
    return collect_rows(
        None, f"no prediction log at {database}", directory, retention_days=retention_days, now=now
    )


def collect_rows(
    collected: pd.DataFrame | None,
    source: str,
    directory: Path,
    *,
    retention_days: int,
    now: float,
) -> dict[str, Any]:
    """Merge labelled predictions read from `source` (None: no log) into directory."""
    merged = merge_outcomes(
        read_outcomes(directory),
        collected if collected is not None else empty_outcomes(),
        now=now,
        retention_days=retention_days,
    )
    document = provenance(merged, source=source, collected_at=now, retention_days=retention_days)
    write_outcomes(directory, merged, document)
    return document
