"""monitoring/labels_demo.py: the outcome-label loop on a real gunicorn service."""

from pathlib import Path

import pytest

from monitoring.labels_demo import release_check, run_loop
from stroke_risk.updating.collect import read_outcomes


@pytest.mark.scenario
@pytest.mark.e2e
def test_the_loop_finds_and_corrects_a_doubled_prevalence(tmp_path: Path) -> None:
    validation, update = run_loop(tmp_path, patients=2000, prevalence_factor=2.0, seed=1)
    outcomes = read_outcomes(tmp_path / "outcomes")
    assert len(outcomes) == 2000 and outcomes["model_version"].nunique() == 1
    assert validation["labels"] == 2000 and validation["holds"] is False
    assert "under-predicts" in validation["verdict"]
    assert update["method"] == "recalibration_in_the_large", update["reason"]
    assert update["held_out"]["accepted"] is True
    assert {p.name for p in (tmp_path / "updated").iterdir()} == {
        "model.joblib",
        "serving_model.npz",
        "model_metadata.json",
    }
    # The loop ends with the release check: the update passes every gate on its held-out part.
    gates = release_check(tmp_path)
    assert [result.line for result in gates if not result.passed] == []
    assert [result.name for result in gates][-1] == "not worse than @production"
