"""Release gates, the audit trail and rollback targets: the pure parts of the release command."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from stroke_risk.commands.release import main
from stroke_risk.evaluation.comparison import Run
from stroke_risk.release.gates import (
    GateResult,
    ProductionGate,
    evaluation_gates,
    load_gates,
    parse_gates,
    production_gate,
)
from stroke_risk.release.publish import (
    GatesFailed,
    alias_move,
    append_audit,
    check_release_gates,
    history_lines,
    read_audit,
    release_notes,
    rollback_target,
)
from stroke_risk.release.records import ReleaseError
from tests.conftest import REPO_ROOT


def interval(value: float, low: float, high: float) -> dict[str, float]:
    return {"value": value, "ci_low": low, "ci_high": high}


def evaluation(
    *, recall=(0.8, 0.67, 0.9), roc_auc=(0.85, 0.8, 0.89), slope=(1.06, 0.86, 1.34)
) -> dict:
    return {
        "test": {"recall": interval(*recall), "roc_auc": interval(*roc_auc)},
        "calibration": {"test": {"calibration_slope": interval(*slope)}},
        "threshold": {"value": 0.05},
    }


GATES = parse_gates(
    {
        "test_ci_low_at_least": {"recall": 0.5},
        "test_ci_low_above": {"roc_auc": 0.5},
        "calibration_slope_ci_contains": 1.0,
        "not_worse_than_production": {"metrics": ["roc_auc", "recall"], "n_resamples": 200},
    }
)


def test_the_committed_gate_file_declares_every_kind_of_gate():
    gates = load_gates(REPO_ROOT)
    assert gates.ci_low_at_least and gates.ci_low_above["roc_auc"] == 0.5
    assert gates.calibration_slope_ci_contains == 1.0
    assert gates.production is not None and "roc_auc" in gates.production.metrics


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"test_recall_min": 0.5}, "unknown gate\\(s\\) test_recall_min; allowed:"),
        ({"test_ci_low_at_least": {"recal": 0.5}}, "unknown metric\\(s\\) recal; allowed:"),
        ({"test_ci_low_above": {"roc_auc": "high"}}, "roc_auc` must be a number, not 'high'"),
        ({"not_worse_than_production": {"metrics": ["f2"]}}, "unknown metric\\(s\\) f2"),
        ({"not_worse_than_production": {"significance": 5}}, "must be in \\(0, 1\\)"),
        ([1, 2], "must be a YAML mapping"),
    ],
)
def test_a_malformed_gate_file_is_one_line_naming_the_key(raw, message):
    with pytest.raises(ReleaseError, match=message) as error:
        parse_gates(raw, "gates.yaml")
    assert "\n" not in str(error.value)


def test_a_good_model_passes_every_evaluation_gate():
    results = evaluation_gates(GATES, evaluation())
    assert [r.passed for r in results] == [True, True, True]
    assert (
        results[0].line
        == "gate test recall CI lower bound ≥ 0.5: test recall 0.800, 95 % CI 0.670–0.900"
    )


def test_the_issue_model_with_recall_002_fails_each_gate_in_its_own_line():
    # threshold.target_recall 0.05 released a model with test recall 0.02 (issue 19).
    results = evaluation_gates(
        GATES,
        evaluation(recall=(0.02, 0.0, 0.06), roc_auc=(0.52, 0.47, 0.58), slope=(1.4, 1.1, 1.8)),
    )
    assert [r.passed for r in results] == [False, False, False]
    lines = [r.line for r in results]
    assert lines[0].endswith("test recall 0.020, 95 % CI 0.000–0.060: lower bound not ≥ 0.5")
    assert lines[1].endswith("95 % CI 0.470–0.580: lower bound not > 0.5")
    assert lines[2].endswith("95 % CI 1.100–1.800: excludes 1")
    assert all("\n" not in line for line in lines)


def test_a_no_skill_model_never_passes_the_roc_auc_gate():
    # Exactly 0.5 at the lower bound is not "above chance".
    (auc,) = [
        r
        for r in evaluation_gates(GATES, evaluation(roc_auc=(0.55, 0.5, 0.6)))
        if "roc_auc" in r.name
    ]
    assert not auc.passed


def test_a_missing_metric_fails_its_gate_naming_the_file():
    results = evaluation_gates(GATES, {"test": {}})
    assert not any(r.passed for r in results)
    assert "reports/evaluation.json has no test.recall" in results[0].detail


def run_with(probability: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> Run:
    return Run(
        name="r",
        family="logreg",
        data="brain",
        cv_settings={},
        fold_scores=pd.DataFrame(),
        evaluation={"threshold": {"value": threshold}},
        test_predictions=pd.DataFrame({"stroke": labels, "probability": probability}),
    )


@pytest.fixture(scope="module")
def test_split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = (rng.random(600) < 0.2).astype(int)
    skilled = np.clip(0.2 + 0.5 * (labels - 0.2) + rng.normal(0, 0.15, 600), 0.001, 0.999)
    noise = rng.random(600)
    return labels, skilled, noise


def test_a_model_worse_than_production_fails_the_paired_gate(test_split):
    labels, skilled, noise = test_split
    gate = ProductionGate(metrics=("roc_auc", "recall"), n_resamples=200, seed=1)
    result = production_gate(
        gate, run_with(noise, labels), run_with(skilled, labels), "release 1.0.0"
    )
    assert not result.passed
    assert result.detail.startswith("significantly worse than release 1.0.0: roc_auc -0.")
    # The same comparison the other way round is no loss.
    reverse = production_gate(
        gate, run_with(skilled, labels), run_with(noise, labels), "release 1.0.0"
    )
    assert reverse.passed and "no significant loss against release 1.0.0" in reverse.detail


def test_without_production_the_paired_gate_passes_and_says_so(test_split):
    labels, skilled, _ = test_split
    result = production_gate(GATES.production, run_with(skilled, labels), None, None)
    assert result.passed and result.detail == "nothing is @production yet; no comparison needed"


def test_runs_on_other_patients_cannot_pass_the_paired_gate(test_split):
    labels, skilled, _ = test_split
    result = production_gate(
        GATES.production, run_with(skilled, labels), run_with(skilled[:-1], labels[:-1]), "v1"
    )
    assert not result.passed and "not on the same patients" in result.detail


def test_release_notes_record_the_override_and_each_failed_gate():
    results = [
        GateResult("a", False, "recall too low"),
        GateResult("b", True, "fine"),
    ]
    notes = release_notes("- retrained", "clinical lead accepted lower recall", results)
    assert notes.splitlines() == [
        "- **Released over 1 failed gate(s)**; reason: clinical lead accepted lower recall",
        "  - gate a: recall too low",
        "- Gates passed (conf/release/gates.yaml): b",
        "- retrained",
    ]


def move(**overrides) -> dict:
    fields = {
        "action": "release",
        "registered_model": "stroke-risk",
        "from_version": None,
        "to_version": "3",
        "release_version": "1.0.0",
        "why": "release 1.0.0",
        "who": "Ann <ann@example.org> (user ann)",
        "when": dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC),
    }
    return alias_move(**{**fields, **overrides})


def test_the_audit_trail_only_ever_grows():
    first = append_audit("", move())
    second = append_audit(first, move(action="rollback", from_version="4", to_version="3"))
    assert second.startswith(first) and second.count("\n") == 2
    entries = read_audit(second)
    assert [(e["from"], e["to"], e["action"]) for e in entries] == [
        (None, "3", "release"),
        ("4", "3", "rollback"),
    ]
    assert entries[0]["who"] == "Ann <ann@example.org> (user ann)"
    assert entries[0]["when"] == "2026-12-03T10:00:00+00:00"
    assert history_lines(entries)[1] == (
        "2026-12-03T10:00:00+00:00  rollback @production 4 -> 3 (release 1.0.0)  "
        "by Ann <ann@example.org> (user ann): release 1.0.0"
    )
    # A file someone edited into non-JSON is refused, never silently rewritten.
    with pytest.raises(ReleaseError, match="line 2 is not JSON; restore the file from git"):
        append_audit(first + "oops\n", move())


RELEASES = [
    {"version": "1.2.0", "registry_version": "5", "model_md5": "c", "tag": "stroke-risk@v1.2.0"},
    {"version": "1.1.0", "registry_version": "4", "model_md5": "b", "tag": "stroke-risk@v1.1.0"},
    {"version": "1.0.1", "registry_version": "4", "model_md5": "b", "tag": "stroke-risk@v1.0.1"},
    {"version": "1.0.0", "registry_version": "2", "model_md5": "a", "tag": "stroke-risk@v1.0.0"},
]


def test_rollback_goes_to_the_previous_release_with_another_model():
    now, target = rollback_target(RELEASES, "5", None)
    assert now["version"] == "1.2.0" and target["version"] == "1.1.0"
    # From 1.1.0 the previous release 1.0.1 is the same MLflow version: skip to 1.0.0.
    assert rollback_target(RELEASES, "4", None)[1]["version"] == "1.0.0"
    assert rollback_target(RELEASES, "5", "v1.0.0")[1]["version"] == "1.0.0"


@pytest.mark.parametrize(
    ("current", "to", "message"),
    [
        (None, None, "nothing is @production; there is no release to roll back"),
        ("2", None, "release 1.0.0 is the first release; there is no earlier one"),
        ("5", "1.2.0", "release 1.2.0 is already @production"),
        ("5", "0.9.0", "no release 0.9.0 in releases.json \\(released: 1.2.0, 1.1.0"),
        ("9", None, "MLflow version 9, which no release in releases.json records; .*--to"),
    ],
)
def test_impossible_rollbacks_are_one_line_refusals(current, to, message):
    with pytest.raises(ReleaseError, match=message):
        rollback_target(RELEASES, current, to)


def gated_project(tmp_path, evaluation_json: dict):
    """A directory with the repository's gate file and reports, the evaluation replaced."""
    (tmp_path / "conf/release").mkdir(parents=True)
    (tmp_path / "conf/release/gates.yaml").write_text(
        (REPO_ROOT / "conf/release/gates.yaml").read_text()
    )
    (tmp_path / "reports").mkdir()
    for name in ("tuning.json", "metrics.json", "test_predictions.csv"):
        (tmp_path / "reports" / name).write_text((REPO_ROOT / "reports" / name).read_text())
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    (tmp_path / "reports/evaluation.json").write_text(json.dumps(evaluation_json))
    return tmp_path


def test_failed_gates_refuse_unless_overridden_with_a_reason(tmp_path):
    bad = json.loads((REPO_ROOT / "reports/evaluation.json").read_text())
    bad["test"]["recall"] = interval(0.02, 0.0, 0.06)
    root = gated_project(tmp_path, bad)
    arguments = {"registered_model": "stroke-risk", "production_version": None, "releases": []}
    with pytest.raises(GatesFailed) as error:
        check_release_gates(root, override=None, **arguments)
    assert len(error.value.failures) == 1
    assert error.value.failures[0].startswith("gate test recall CI lower bound ≥ 0.5:")
    assert 'OVERRIDE="reason"' in str(error.value)
    results = check_release_gates(root, override="accepted by the clinical lead", **arguments)
    assert [r.passed for r in results] == [False, True, True, True]
    assert "nothing is @production yet" in results[-1].detail


def test_the_command_line_documents_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["--help"])
    assert exit_code.value.code == 0
    shown = capsys.readouterr().out
    for command in ("release", "rollback", "history"):
        assert f"    {command} " in shown
    with pytest.raises(SystemExit):
        main(["rollback", "--help"])
    assert "--to VERSION" in capsys.readouterr().out


def test_history_prints_the_committed_trail(tmp_path, capsys):
    (tmp_path / "releases_audit.jsonl").write_text(append_audit("", move()))
    assert main(["history", "--root", str(tmp_path)]) == 0
    assert "release  @production - -> 3 (release 1.0.0)" in capsys.readouterr().out
