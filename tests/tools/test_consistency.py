"""tools.consistency: params.yaml is the composition of conf/; dvc.yaml deps match the code."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tools.consistency import (
    check_import_layers,
    check_params_composition,
    check_programs_in_commands,
    differences,
    main,
    run_checks,
)


@pytest.fixture
def project(tmp_path):
    """conf/, params.yaml, dvc.yaml, pyproject.toml and the code of the repository, copied."""
    for folder in ("app", "conf", "stages", "stroke_risk"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    for name in ("params.yaml", "dvc.yaml", "pyproject.toml"):
        shutil.copy2(REPO_ROOT / name, tmp_path / name)
    return tmp_path


def edit_params(root, change) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    change(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.integration
def test_the_repository_is_consistent():
    assert run_checks(REPO_ROOT) == []


def test_differences_name_every_key():
    expected = {"a": {"b": 1, "c": [1, 2]}, "d": 0.5, "e": True}
    actual = {"a": {"b": 2, "c": [1, 2]}, "d": 0.5, "e": 1, "f": "x"}
    found = differences(expected, actual)
    assert found == [
        "a.b: conf/ 1, params.yaml 2",
        "e: conf/ True, params.yaml 1",
        "f not in conf/ (params.yaml has 'x')",
    ]
    assert differences(expected, expected) == []


def test_an_edited_params_file_is_one_line_naming_the_keys_and_the_fix(project):
    def change(params):
        params["tune"]["n_trials"] = 2
        del params["evaluate"]["bootstrap_seed"]

    edit_params(project, change)
    (problem,) = check_params_composition(project)
    assert "tune.n_trials: conf/ 25, params.yaml 2" in problem
    assert "evaluate.bootstrap_seed missing" in problem
    assert "--write-params" in problem and "\n" not in problem


def test_a_changed_default_group_is_caught(project):
    config = (project / "conf/config.yaml").read_text()
    (project / "conf/config.yaml").write_text(config.replace("data: brain", "data: healthcare"))
    (problem,) = check_params_composition(project)
    assert "data.raw_path: conf/ 'data/raw/healthcare-dataset-stroke-data.csv'" in problem


@pytest.mark.integration
def test_write_params_restores_consistency(project, capsys):
    edit_params(project, lambda params: params["split"].update(seed=7))
    assert main(["--root", str(project)]) == 1
    assert "split.seed" in capsys.readouterr().err
    assert main(["--root", str(project), "--write-params"]) == 0
    assert check_params_composition(project) == []
    assert yaml.safe_load((project / "params.yaml").read_text())["split"]["seed"] == 42


def test_broken_inputs_are_one_line(project):
    (project / "params.yaml").write_text("a: [")
    (problem,) = check_params_composition(project)
    assert problem.startswith("params.yaml is not valid YAML")
    (project / "params.yaml").unlink()
    (problem,) = check_params_composition(project)
    assert "params.yaml not found" in problem
    shutil.copy2(REPO_ROOT / "params.yaml", project / "params.yaml")
    (project / "conf/config.yaml").write_text("defaults:\n  - model: no_such_family\n")
    (problem,) = check_params_composition(project)
    assert problem.startswith("conf/ does not compose") and "\n" not in problem


@pytest.mark.integration
def test_the_command_exits_non_zero_on_a_problem(project):
    edit_params(project, lambda params: params["cv"].update(n_splits=3))
    command = [sys.executable, "-m", "tools.consistency", "--root", str(project)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("params.yaml is the composition of conf/: params.yaml is not")
    assert "cv.n_splits: conf/ 5, params.yaml 3" in result.stderr


@pytest.mark.integration
def test_a_stage_missing_a_code_dependency_is_named(project):
    dvc_yaml = (project / "dvc.yaml").read_text()
    (project / "dvc.yaml").write_text(
        dvc_yaml.replace("      - stroke_risk/models/tuning.py\n", "", 1)
    )
    problems = run_checks(project)
    assert problems == [
        "dvc.yaml deps match the code: stage 'tune' runs stroke_risk/models/tuning.py but dvc.yaml "
        "does not list it in deps"
    ]


@pytest.mark.integration
def test_an_import_against_the_layers_is_named_with_its_line(project):
    assert check_import_layers(project) == []
    prepared = project / "stroke_risk" / "data" / "prepared.py"
    lines = prepared.read_text().splitlines()
    lines.append("import stroke_risk.models.pipelines  # the data room reaching up")
    prepared.write_text("\n".join(lines) + "\n")
    layers, cycle = check_import_layers(project)
    assert layers == (
        "stroke_risk.data is not allowed to import stroke_risk.models: "
        f"- stroke_risk.data.prepared -> stroke_risk.models.pipelines (l.{len(lines)})"
    )
    assert cycle.startswith("No cycles are allowed in stroke_risk.")
    assert cycle.endswith("- .data -> .models (1 import)")


def test_a_program_in_the_library_is_named(project):
    assert check_programs_in_commands(project) == []
    summary = project / "stroke_risk" / "reports" / "summary.py"
    summary.write_text(summary.read_text() + '\nif __name__ == "__main__":\n    print("hi")\n')
    (problem,) = check_programs_in_commands(project)
    assert problem.startswith("stroke_risk/reports/summary.py is a command-line program")
    summary.write_text("import argparse\n")
    (problem,) = check_programs_in_commands(project)
    assert problem.startswith("stroke_risk/reports/summary.py is a command-line program")
