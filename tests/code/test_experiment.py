"""`python -m stroke_risk.commands.exp_run run`: -S overrides are checked before
DVC runs anything."""

import os
import shutil
import subprocess
import sys

import pytest

from stroke_risk.tracking.experiment_overrides import (
    check_overrides,
    set_params,
    sweep_combinations,
)
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["tune.n_trails=5"],
            "-S tune.n_trails=5: params have no key 'tune.n_trails' (keys there: tune.n_trials,",
        ),
        (["nosection.x=1"], "params have no key 'nosection.x' (keys there: data, model,"),
        (
            ["model=logreg,xgbost"],
            "-S model=xgbost: 'xgbost' is not an option of config group 'model' (options: ebm,",
        ),
        (["tune.n_trials=abc"], "param 'tune.n_trials' = 'abc': Input should be a valid integer"),
        (["tune.n_trials=0"], "param 'tune.n_trials' = 0: Input should be greater than or equal"),
        (["+train.extra=1"], "unknown param 'train.extra' (known: train.seed)"),
        (["threshold.policy=best"], "Input should be 'min_recall', 'max_f1', 'youden' or"),
        (
            ["model.family=xgbost"],
            "param 'model.family' = 'xgbost': unknown model family (known: logreg,",
        ),
        (
            ["data.raw_path=/nonexistent/my.csv"],
            "data.raw_path: no such file '/nonexistent/my.csv'",
        ),
    ],
)
def test_a_bad_override_is_one_line_naming_it(overrides, expected):
    (problem,) = check_overrides(REPO_ROOT, overrides)
    assert expected in problem and "\n" not in problem


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=logreg,random_forest,xgboost"],
        ["data=healthcare", "tune.n_trials=3"],
        ["threshold.target_recall=0.9"],
        ["data.raw_path=data/raw/healthcare-dataset-stroke-data.csv"],
        ["other.yaml:some.key=1"],  # another params file: not Hydra's, left to DVC
    ],
)
def test_good_overrides_pass(overrides):
    assert check_overrides(REPO_ROOT, overrides) == []


def test_every_combination_of_a_sweep_is_checked():
    assert sweep_combinations(["model=logreg,xgboost", "tune.n_trials=3,40"]) == [
        ["model=logreg", "tune.n_trials=3"],
        ["model=logreg", "tune.n_trials=40"],
        ["model=xgboost", "tune.n_trials=3"],
        ["model=xgboost", "tune.n_trials=40"],
    ]
    problems = check_overrides(REPO_ROOT, ["model=logreg,xgboost", "tune.n_trials=5,0"])
    assert len(problems) == 2 and all("tune.n_trials=0" in p for p in problems)


def test_set_params_finds_every_spelling():
    arguments = [
        "--queue",
        "-S",
        "a=1",
        "--set-param=b=2",
        "-Sc=3",
        "-n",
        "x",
        "--set-param",
        "d=4",
    ]
    assert set_params(arguments) == ["a=1", "b=2", "c=3", "d=4"]


@pytest.mark.integration
def test_the_command_refuses_before_dvc_touches_anything(tmp_path):
    for name in ("conf", "params.yaml"):
        source = REPO_ROOT / name
        target = tmp_path / name
        shutil.copytree(source, target) if source.is_dir() else shutil.copy(source, target)
    before = (tmp_path / "params.yaml").read_bytes()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stroke_risk.commands.exp_run",
            "run",
            "-n",
            "x",
            "-S",
            "train.sed=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: -S train.sed=1: params have no key 'train.sed' (keys there: train.seed); "
        "check the spelling (keys are in conf/)"
    ]
    assert (tmp_path / "params.yaml").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf", "params.yaml"]
