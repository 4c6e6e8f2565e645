"""Releasing an update from outcome labels: the gates on its held-out part, the refusals and
the record. Planted label sets (stroke_risk/updating/simulation.py) run through the real plan
(decide), the real held-out evidence (stroke_risk/updating/holdout.py) and the real gate code
of `make release MODEL=updated` (stroke_risk/release/publish.py); the end-to-end release with
git, DVC and MLflow is tests/release/test_release_e2e.py's machinery and README's command."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from stroke_risk import paths
from stroke_risk.evaluation.calibration import LOGIT_CLIP
from stroke_risk.log_odds import logit
from stroke_risk.release.publish import (
    GATES_FILE,
    GatesFailed,
    UpdateToRelease,
    build_release,
    changelog_section,
    check_update_gates,
    read_update,
    update_evaluation,
    update_record,
)
from stroke_risk.release.records import ReleaseError
from stroke_risk.updating.holdout import held_out_evidence
from stroke_risk.updating.protocol import (
    Protocol,
    Recalibration,
    decide,
    fit_recalibrations,
    held_out_split,
)
from stroke_risk.updating.recalibrated import recalibrated_threshold
from stroke_risk.updating.simulation import development_like_log_odds
from tests.conftest import REPO_ROOT

BASE_MD5 = "0" * 32
BASE_THRESHOLD = 0.05
PLAN = Protocol()


def planted(shift: float, slope: float = 1.0, n: int = 6000, seed: int = 3):
    """Labels from a known truth around the base model's risks: logit = shift + slope * lp."""
    rng = np.random.default_rng(seed)
    base_log_odds = development_like_log_odds(n, rng)
    probability = np.asarray(expit(base_log_odds))
    y = (rng.random(n) < expit(shift + slope * base_log_odds)).astype(int)
    return y, probability


def evidence_for(y, probability, plan: Protocol = PLAN):
    decision = decide(y, probability, plan)
    evidence = held_out_evidence(
        y,
        probability,
        decision,
        plan,
        base_threshold=BASE_THRESHOLD,
        base_model_version=BASE_MD5,
        n_resamples=300,
        seed=1,
    )
    return decision, evidence


def workspace(tmp_path: Path, decision, evidence) -> Path:
    """A project directory holding what `dvc repro update` writes and the gate file."""
    (tmp_path / "conf/release").mkdir(parents=True)
    shutil.copy(REPO_ROOT / GATES_FILE, tmp_path / GATES_FILE)
    (tmp_path / paths.OUTCOME_REPORTS_DIR).mkdir(parents=True)
    (tmp_path / paths.UPDATED_DIR).mkdir(parents=True)
    (tmp_path / paths.UPDATE_HOLDOUT).write_text(json.dumps(evidence.document))
    metadata = {
        "model_family": "logreg",
        "decision_threshold": recalibrated_threshold(BASE_THRESHOLD, decision.recalibration),
        "update": {
            "base_model_version": BASE_MD5,
            "method": decision.method,
            "intercept": decision.recalibration.intercept,
            "slope": decision.recalibration.slope,
            "base_decision_threshold": BASE_THRESHOLD,
            "labels": decision.events.labels,
            "events": decision.events.events,
        },
    }
    (tmp_path / paths.UPDATED_MODEL_METADATA).write_text(json.dumps(metadata))
    return tmp_path


def update_in(root: Path, evidence) -> UpdateToRelease:
    """What read_update gives for the workspace: its files, and the held-out rows it reruns
    from the outcome labels there (here: the planted evidence's own rows; the rerun itself is
    tests/release/test_release_update_e2e.py's)."""
    return UpdateToRelease(
        evidence=json.loads((root / paths.UPDATE_HOLDOUT).read_text()),
        predictions=evidence.predictions,
        metadata=json.loads((root / paths.UPDATED_MODEL_METADATA).read_text()),
    )


BASE_RELEASE = {"version": "1.0.0", "model_md5": BASE_MD5, "registry_version": "1"}
OTHER_RELEASE = {"version": "1.1.0", "model_md5": "f" * 32, "registry_version": "2"}


@pytest.fixture(scope="module")
def doubled():
    """Prevalence doubled: the plan chooses and accepts recalibration in the large."""
    y, probability = planted(shift=np.log(2.2))
    return y, probability, *evidence_for(y, probability)


def test_the_evidence_is_the_fit_without_the_held_out_labels_on_them(doubled):
    y, probability, decision, evidence = doubled
    assert decision.method == "recalibration_in_the_large"
    updating, held = held_out_split(y, fraction=PLAN.held_out_fraction, seed=PLAN.seed)
    fits, _ = fit_recalibrations(y[updating], probability[updating])
    judged = evidence.document["judged_recalibration"]
    assert judged["intercept"] == pytest.approx(fits[decision.method].intercept)
    # The released fit uses every label, so it differs from the judged one; both are named.
    assert evidence.document["released_recalibration"]["intercept"] != judged["intercept"]
    assert evidence.document["labels"] == len(held) == len(evidence.predictions)
    assert evidence.predictions["stroke"].tolist() == y[held].tolist()
    assert np.allclose(evidence.predictions["base_probability"], probability[held])
    # The update's threshold flags exactly the patients the base flagged.
    threshold = evidence.document["threshold"]["value"]
    assert (
        (evidence.predictions["probability"] >= threshold)
        == (evidence.predictions["base_probability"] >= BASE_THRESHOLD)
    ).all()


def test_an_accepted_update_passes_every_gate_on_its_held_out_labels(tmp_path, doubled):
    _, _, decision, evidence = doubled
    root = workspace(tmp_path, decision, evidence)
    update = update_in(root, evidence)
    results = check_update_gates(
        root, update, production_version="1", releases=[BASE_RELEASE], override=None
    )
    assert [r.name for r in results] == [
        "held-out recall CI lower bound ≥ 0.5",
        "held-out roc_auc CI lower bound > 0.5",
        "calibration slope CI contains 1",
        "not worse than @production",
    ]
    assert all(r.passed for r in results), [r.line for r in results]
    assert "release 1.0.0 (the base" in results[-1].detail
    # Paired on the held-out patients: the base under-predicts twice the risk, so the
    # update's Brier score is better and ranking (a monotone map) identical.
    assert "no significant loss" in results[-1].detail


def test_the_base_under_predicting_is_what_the_paired_gate_sees(doubled):
    from stroke_risk.evaluation.comparison import holdout_comparison
    from stroke_risk.release.gates import held_out_runs

    _, _, _, evidence = doubled
    update, base = held_out_runs(
        evidence.predictions,
        threshold=evidence.document["threshold"]["value"],
        base_threshold=BASE_THRESHOLD,
    )
    compared = holdout_comparison(update, base, n_resamples=300, seed=0)
    assert compared is not None
    assert compared["roc_auc"]["difference"] == pytest.approx(0.0, abs=1e-12)
    assert compared["recall"]["difference"] == 0.0
    assert compared["brier"]["difference"] < 0 and compared["brier"]["p"] < 0.05


def test_an_update_failing_a_gate_on_its_held_out_part_is_refused_naming_it(tmp_path):
    # Risk effects weakened (true logit = 0.6 x model logit) under a lax plan: only a new
    # intercept allowed and no calibration check at acceptance. The plan accepts a new
    # intercept; the release gate sees the held-out slope far from 1.
    lax = Protocol(
        allowed_methods=("keep", "recalibration_in_the_large"),
        require_calibrated_on_held_out=False,
    )
    y, probability = planted(shift=0.0, slope=0.6, n=8000)
    decision, evidence = evidence_for(y, probability, lax)
    assert decision.method == "recalibration_in_the_large"
    root = workspace(tmp_path, decision, evidence)
    with pytest.raises(GatesFailed) as refused:
        check_update_gates(
            root,
            update_in(root, evidence),
            production_version="1",
            releases=[BASE_RELEASE],
            override=None,
        )
    (line,) = refused.value.failures
    assert line.startswith("gate calibration slope CI contains 1: held-out calibration slope ")
    assert line.endswith("excludes 1")
    # OVERRIDE="reason" releases anyway: the failure is returned, to be recorded.
    results = check_update_gates(
        root,
        update_in(root, evidence),
        production_version="1",
        releases=[BASE_RELEASE],
        override="why",
    )
    assert [r.name for r in results if not r.passed] == ["calibration slope CI contains 1"]


def test_production_other_than_the_base_fails_the_paired_gate(tmp_path, doubled):
    _, _, decision, evidence = doubled
    root = workspace(tmp_path, decision, evidence)
    with pytest.raises(GatesFailed) as refused:
        check_update_gates(
            root,
            update_in(root, evidence),
            production_version="2",
            releases=[OTHER_RELEASE, BASE_RELEASE],
            override=None,
        )
    (line,) = refused.value.failures
    assert "@production is release 1.1.0 (MLflow version 2), not the base" in line
    assert BASE_MD5 in line


def test_releasing_an_update_when_the_plan_kept_the_model_is_refused(tmp_path):
    y, probability = planted(shift=0.0)
    decision, evidence = evidence_for(y, probability)
    assert decision.method == "keep"
    root = workspace(tmp_path, decision, evidence)
    with pytest.raises(ReleaseError) as refused:
        read_update(root)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("the update stage kept the model (the closed test keeps")
    assert "nothing to release beyond it" in message


def test_the_record_and_changelog_say_what_was_released(tmp_path, doubled):
    _, _, decision, evidence = doubled
    root = workspace(tmp_path, decision, evidence)
    update = update_in(root, evidence)
    record = build_release(
        version="1.1.0",
        model_md5="a" * 32,
        registry_version="3",
        source_commit="c" * 40,
        released_on=dt.date(2026, 12, 3),
        evaluation=update_evaluation(update),
        metrics={},
        metadata=update.metadata,
        data_name="held-out outcome labels",
    )
    record["update"] = update_record(update, [BASE_RELEASE])
    assert record["update"]["base_release"] == "1.0.0"
    assert record["update"]["intercept"] == pytest.approx(decision.recalibration.intercept)
    assert record["update"]["held_out"]["labels"] == evidence.document["labels"]
    # The record's threshold is the released model's, its metrics the held-out ones.
    assert record["threshold"]["value"] == update.metadata["decision_threshold"]
    assert record["test_metrics"]["roc_auc"] == evidence.document["test"]["roc_auc"]
    section = changelog_section(record, "")
    assert f"Update of the model md5 `{BASE_MD5}` (release 1.0.0) by recalibration in the" in (
        section
    )
    assert "| held-out metric | value | 95 % CI |" in section
    assert f"Judged on {evidence.document['labels']} held-out labels" in section


def test_held_out_probabilities_follow_the_judged_recalibration(doubled):
    _, _, _, evidence = doubled
    judged = Recalibration(**evidence.document["judged_recalibration"])
    expected = judged.probability(evidence.predictions["base_probability"].to_numpy())
    assert np.allclose(evidence.predictions["probability"], expected)
    assert np.all(np.abs(logit(expected, floor=LOGIT_CLIP)) < 20)
