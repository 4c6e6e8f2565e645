"""A stage given bad input exits non-zero, names the problem and keeps previous outputs."""

import subprocess
import sys

import numpy as np
import pytest
import yaml

from stroke_risk.data.schema import TARGET
from tests.conftest import REPO_ROOT, copy_tracked_files
from tests.pipeline.conftest import run, with_tiny_budget


def run_prepare(tmp_path, raw_text: str):
    raw = tmp_path / "raw.csv"
    raw.write_text(raw_text)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"]["raw_path"] = str(raw)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.prepare",
            "--params",
            str(params_path),
            "--train",
            str(tmp_path / "prepared" / "train.csv"),
            "--test",
            str(tmp_path / "prepared" / "test.csv"),
            "--summary",
            str(tmp_path / "summary.json"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_bad_input_fails_cleanly_and_keeps_previous_outputs(tmp_path, brain_raw_text):
    good = run_prepare(tmp_path, brain_raw_text)
    assert good.returncode == 0, good.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "prepared").iterdir()}
    summary_before = (tmp_path / "summary.json").read_bytes()

    lines = brain_raw_text.splitlines()
    index = next(i for i, line in enumerate(lines) if ",80.0," in line)
    lines[index] = lines[index].replace(",80.0,", ",eighty,")
    bad = run_prepare(tmp_path, "\n".join(lines) + "\n")

    assert bad.returncode == 1
    assert "column 'age': 1 row(s) not numeric" in bad.stderr
    assert f"file lines {index + 1}" in bad.stderr
    assert "Traceback" not in bad.stderr
    after = {p.name: p.read_bytes() for p in (tmp_path / "prepared").iterdir()}
    assert after == before  # no partial or temporary files either
    assert (tmp_path / "summary.json").read_bytes() == summary_before


@pytest.mark.integration
def test_empty_file_is_a_clear_error(tmp_path):
    result = run_prepare(tmp_path, "")
    assert result.returncode == 1
    assert "file is empty" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.scenario
@pytest.mark.e2e
def test_a_model_without_skill_still_gets_its_report_saying_so(tmp_path, brain_frame):
    """Labels shuffled: no field carries any signal, C ~ 0.5 and Cox-Snell R2 ~ 0. Every stage
    must still run (the report once died in the sample-size section) and say so plainly."""
    copy_tracked_files(tmp_path)
    shuffled = brain_frame.copy()
    shuffled[TARGET] = np.random.default_rng(0).permutation(shuffled[TARGET].to_numpy())
    shuffled.to_csv(tmp_path / "data/raw/brain.csv", index=False)
    with_tiny_budget(tmp_path / "params.yaml")
    run(["git", "init", "-q"], tmp_path)
    result = run(["dvc", "repro"], tmp_path, timeout=600, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    card = (tmp_path / "reports/model_card.md").read_text()
    summary = card.split("## Intended use")[0]
    assert "This model has no demonstrated skill" in summary
    assert "expected shrinkage" in (tmp_path / "reports/tripod_ai.md").read_text()
