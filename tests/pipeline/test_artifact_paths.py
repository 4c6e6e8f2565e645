"""stroke_risk/paths.py against dvc.yaml and the stages: one definition of where artifacts live."""

from __future__ import annotations

import argparse
import importlib
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from stroke_risk import paths
from tests.conftest import REPO_ROOT


def dvc_stages() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def entry_paths(entries: list[Any]) -> set[str]:
    """The paths of a dvc.yaml outs/metrics/deps list (entries are str or {path: options})."""
    return {next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries}


def declared_outputs(stage: dict[str, Any]) -> set[str]:
    return entry_paths(stage.get("outs", [])) | entry_paths(stage.get("metrics", []))


def declared_artifact_inputs(stage: dict[str, Any]) -> set[str]:
    """deps that are artifacts of other stages: not code, conf/ or the raw data (a param)."""
    return {
        dep
        for dep in entry_paths(stage["deps"])
        if not dep.endswith(".py") and not dep.startswith(("conf/", "${"))
    }


def test_the_table_names_every_stage_of_dvc_yaml():
    assert set(paths.STAGE_OUTPUTS) == set(dvc_stages())
    assert set(paths.STAGE_INPUTS) == set(dvc_stages())


@pytest.mark.parametrize("name", list(paths.STAGE_OUTPUTS))
def test_stage_outputs_are_the_dvc_yaml_outs(name):
    assert set(paths.STAGE_OUTPUTS[name]) == declared_outputs(dvc_stages()[name])


@pytest.mark.parametrize("name", list(paths.STAGE_INPUTS))
def test_stage_inputs_are_the_dvc_yaml_artifact_deps(name):
    assert set(paths.STAGE_INPUTS[name]) == declared_artifact_inputs(dvc_stages()[name])


def test_each_artifact_has_one_writer_and_its_readers_run_after_it():
    writers = [path for outputs in paths.STAGE_OUTPUTS.values() for path in outputs]
    assert len(writers) == len(set(writers))
    order = list(paths.STAGE_OUTPUTS)
    for reader, inputs in paths.STAGE_INPUTS.items():
        for path in set(inputs) - set(paths.EXTERNAL_INPUTS):
            writer = next(name for name, outs in paths.STAGE_OUTPUTS.items() if path in outs)
            assert order.index(writer) < order.index(reader), f"{reader} reads {path}"


class _ParsedDefaults(Exception):
    def __init__(self, defaults: dict[str, Any]) -> None:
        self.defaults = defaults


def stage_defaults(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A stage's argparse defaults: its main() runs up to parse_args, which stops it."""

    def parse_defaults(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        raise _ParsedDefaults(vars(parser.parse_known_args([])[0]))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_defaults)
    module = importlib.import_module(f"stages.{name}")
    with pytest.raises(_ParsedDefaults) as stopped:
        module.main()
    return stopped.value.defaults


@pytest.mark.parametrize("name", list(paths.STAGE_OUTPUTS))
def test_stage_defaults_are_the_paths_dvc_yaml_gives_the_stage(name, monkeypatch):
    """Run without arguments (as dvc.yaml runs it), a stage reads and writes only its own
    declared artifacts: each default is one of them, or the folder holding some of them."""
    own = {paths.PARAMS, *paths.STAGE_OUTPUTS[name], *paths.STAGE_INPUTS[name]}
    folders = {str(PurePosixPath(path).parent) for path in own}
    for option, default in stage_defaults(name, monkeypatch).items():
        if isinstance(default, str):
            assert default in own | folders, f"stages/{name}.py --{option} = {default}"
