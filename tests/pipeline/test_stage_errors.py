"""A stage given bad input exits non-zero, names the problem and keeps previous outputs."""

import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO_ROOT


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
            "--out-dir",
            str(tmp_path / "prepared"),
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
