"""notebook/demo.ipynb is committed without outputs and runs end to end on the pipeline's
outputs, starting and stopping its own API server."""

from __future__ import annotations

import os
import re

import nbformat
import pytest

from tests.conftest import REPO_ROOT
from tools.run_notebook import execute_notebook

NOTEBOOK = REPO_ROOT / "notebook" / "demo.ipynb"
TOTAL_SECONDS = 300
# What the notebook reads; all are produced by `dvc repro` (the app config is committed).
REQUIRED = (
    "models/model.joblib",
    "models/model_metadata.json",
    "reports/metrics.json",
    "reports/evaluation.json",
    "app/gunicorn_conf.py",
)


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def _require_pipeline_outputs() -> None:
    missing = [path for path in REQUIRED if not (REPO_ROOT / path).exists()]
    if missing:
        message = f"missing {', '.join(missing)}: run `dvc repro` first"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _text_outputs(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif "data" in output and "text/plain" in output.data:
                parts.append(output.data["text/plain"])
    return "\n".join(parts)


@pytest.mark.scenario
@pytest.mark.e2e
def test_demo_notebook_runs_against_the_pipeline_outputs(tmp_path, monkeypatch):
    _require_pipeline_outputs()
    # Exercise the self-contained path: the notebook starts (and stops) its own server.
    monkeypatch.delenv("STROKE_API_URL", raising=False)
    monkeypatch.setenv("STROKE_PROJECT_DIR", str(REPO_ROOT))
    # The notebook starts the app, whose prediction log must not land in the repository.
    monkeypatch.setenv("STROKE_MONITOR_DB", str(tmp_path / "predictions.sqlite"))
    committed = NOTEBOOK.read_bytes()
    executed = tmp_path / "demo.executed.ipynb"  # kept for inspection when the test fails
    # What `make notebook` runs: the outputs go to the copy, never into the committed file.
    execute_notebook(NOTEBOOK, executed, TOTAL_SECONDS)
    assert NOTEBOOK.read_bytes() == committed
    notebook = nbformat.read(executed, as_version=4)

    text = _text_outputs(notebook)
    assert "started the API at http://127.0.0.1:" in text
    assert "API stopped" in text
    explained = re.search(r"max \|base \+ contributions - logit\|: (\S+)", text)
    assert explained and float(explained.group(1)) < 1e-6
    served = re.search(r"max \|API - local\| probability: (\S+)", text)
    assert served and float(served.group(1)) < 1e-6
    assert "400" in text  # the invalid record is rejected
    port = re.search(r"started the API at http://127.0.0.1:(\d+)", text).group(1)
    _assert_port_closed(int(port))


def _assert_port_closed(port: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.settimeout(1)
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the notebook left its server running"
