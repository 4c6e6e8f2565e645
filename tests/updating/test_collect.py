"""make collect-labels (stroke_risk/updating/collect.py) on a real prediction log in tmp_path."""

import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stroke_risk.monitoring.prediction_log import PredictionLog, PredictionRecord
from stroke_risk.updating.collect import (
    collect,
    empty_outcomes,
    merge_outcomes,
    read_outcomes,
    rows_of_version,
    set_push,
)

DAY = 86400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log_with_labels(tmp_path):
    clock = Clock(1_000 * DAY)
    log = PredictionLog(tmp_path / "log" / "predictions.sqlite", clock=clock)
    records = [
        PredictionRecord(f"a{i:03d}", {"age": 50.0 + i}, 0.01 * (i + 1), i % 3 == 0, "v1")
        for i in range(6)
    ] + [PredictionRecord("b000", {"age": 70.0}, 0.3, True, "v2")]
    log.record_predictions(records)
    for pid, label in (("a000", 1), ("a001", 0), ("a002", 0), ("b000", 1)):
        log.record_feedback(pid, label, labelled_by="ward-7")
    yield log, clock
    log.close()


def test_collect_exports_labelled_rows_privately_with_provenance(tmp_path, log_with_labels):
    log, clock = log_with_labels
    out = tmp_path / "outcomes"
    document = collect(log.path, out, retention_days=730, now=clock.now)
    frame = read_outcomes(out)
    assert sorted(frame["prediction_id"]) == ["a000", "a001", "a002", "b000"]
    # Only what validation and recalibration need: no features, no credential names.
    assert "features" not in frame.columns and "labelled_by" not in frame.columns
    assert os.stat(out).st_mode & 0o777 == 0o700
    for name in ("labelled_predictions.csv", "provenance.json"):
        assert os.stat(out / name).st_mode & 0o777 == 0o600
    assert document["labels"] == 4 and document["events"] == 2
    assert document["model_versions"]["v1"] == {
        "labels": 3,
        "events": 1,
        "prevalence": pytest.approx(1 / 3, abs=1e-6),
        "first_scored": document["first_scored"],
        "last_scored": document["last_scored"],
    }
    assert json.loads((out / "provenance.json").read_text()) == document
    mine, others = rows_of_version(frame, "v1")
    assert len(mine) == 3 and others == 1


def test_collect_without_a_log_writes_the_empty_set(tmp_path):
    out = tmp_path / "outcomes"
    document = collect(tmp_path / "missing.sqlite", out, retention_days=30, now=0.0)
    assert document["labels"] == 0 and document["source"].startswith("no prediction log")
    assert read_outcomes(out).empty


def test_labels_accumulate_across_collections_until_retention(tmp_path, log_with_labels):
    log, clock = log_with_labels
    out = tmp_path / "outcomes"
    collect(log.path, out, retention_days=730, now=clock.now)
    log.purge()  # the log's own retention removed them; the outcome set keeps them
    assert len(read_outcomes(out)) == 4
    assert collect(log.path, out, retention_days=730, now=clock.now)["labels"] == 4
    later = clock.now + 731 * DAY
    assert collect(log.path, out, retention_days=730, now=later)["labels"] == 0


def test_merge_prefers_the_newer_copy_of_a_row():
    old = pd.DataFrame(
        {
            "prediction_id": ["x"],
            "created_at": [10.0],
            "labelled_at": [11.0],
            "model_version": ["v1"],
            "probability": [0.2],
            "decision": [1],
            "label": [0],
        }
    )
    new = old.assign(label=[1], labelled_at=[12.0])
    merged = merge_outcomes(old, new, now=20.0, retention_days=1)
    assert merged["label"].tolist() == [1]
    assert merge_outcomes(empty_outcomes(), old, now=10.0 + 2 * DAY, retention_days=1).empty


def test_a_bad_outcome_file_names_row_and_column(tmp_path):
    out = tmp_path / "outcomes"
    collect(None, out, retention_days=30, now=0.0)
    (out / "labelled_predictions.csv").write_text(
        "prediction_id,created_at,labelled_at,model_version,probability,decision,label\n"
        "x,1,2,v1,0.2,1,1\n"
        "y,1,2,v1,0.2,1,2\n"
    )
    with pytest.raises(ValueError, match="row 3, column label"):
        read_outcomes(out)


def test_set_push_marks_the_tracked_folder(tmp_path):
    dvc_file = tmp_path / "outcomes.dvc"
    dvc_file.write_text(yaml.safe_dump({"outs": [{"md5": "x.dir", "path": "outcomes"}]}))
    set_push(dvc_file, False)
    assert yaml.safe_load(dvc_file.read_text())["outs"][0]["push"] is False
    set_push(dvc_file, True)
    assert "push" not in yaml.safe_load(dvc_file.read_text())["outs"][0]


@pytest.mark.integration
def test_first_labels_move_the_set_from_git_to_dvc_not_pushed(tmp_path, monkeypatch):
    import shutil
    import subprocess

    from stroke_risk.commands.collect_labels import main
    from tests.conftest import REPO_ROOT

    log = PredictionLog(tmp_path / "log.sqlite")  # the real clock: collect drops old rows
    log.record_predictions([PredictionRecord(f"c{i}", {}, 0.1, False, "v1") for i in range(4)])
    for i in range(4):
        log.record_feedback(f"c{i}", i % 2)
    log.close()
    workspace = tmp_path / "clone"
    workspace.mkdir()
    shutil.copy(REPO_ROOT / "params.yaml", workspace / "params.yaml")
    shutil.copytree(REPO_ROOT / "data/outcomes", workspace / "data/outcomes")
    monkeypatch.chdir(workspace)
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(command, check=True)
    # An empty log keeps the shipped set in git.
    assert main(["--db", str(tmp_path / "none.sqlite")]) == 0
    assert not Path("data/outcomes.dvc").exists()
    assert main(["--db", str(log.path)]) == 0
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "data/outcomes"], capture_output=True, text=True, check=True
    ).stdout
    assert tracked == ""
    dvc_file = yaml.safe_load(Path("data/outcomes.dvc").read_text())
    assert dvc_file["outs"][0]["push"] is False
    assert len(read_outcomes(Path("data/outcomes"))) == 4


@pytest.mark.integration
def test_collect_reads_the_postgresql_log_as_it_reads_the_sqlite_one(postgres_server, tmp_path):
    from stroke_risk.monitoring.postgres_log import PostgresPredictionLog
    from stroke_risk.updating.collect import collect_rows
    from stroke_risk.updating.postgres_source import (
        describe_source,
        read_labelled_predictions_from_database,
    )

    _, url = postgres_server.new_prediction_log()
    records = [
        PredictionRecord(f"p{i}", {"age": 60.0}, 0.1 * (i + 1), i % 2 == 0, "v1") for i in range(4)
    ]
    logs = [PostgresPredictionLog(url), PredictionLog(tmp_path / "log.sqlite")]
    for log in logs:
        log.record_predictions(records)
        for i in range(3):
            log.record_feedback(f"p{i}", i % 2)
        log.close()
    now = time.time()  # collect drops rows older than the retention
    rows = read_labelled_predictions_from_database(url)
    from_postgres = collect_rows(
        rows, describe_source(url), tmp_path / "pg", retention_days=730, now=now
    )
    collect(tmp_path / "log.sqlite", tmp_path / "sqlite", retention_days=730, now=now)
    assert from_postgres["labels"] == 3 and "PostgreSQL" in from_postgres["source"]
    assert postgres_server.service_password not in json.dumps(from_postgres)
    unordered = ["created_at", "labelled_at"]  # each log's own clock
    assert (
        read_outcomes(tmp_path / "pg")
        .drop(columns=unordered)
        .equals(read_outcomes(tmp_path / "sqlite").drop(columns=unordered))
    )
