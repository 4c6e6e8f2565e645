"""Check `dvc exp run -S` overrides before DVC runs anything: one line per mistake.

`dvc exp run -S train.sed=1` is refused by Hydra inside DVC with a multi-line "unexpected
error" whose suggested fix (`+train.sed=1`) would only add an unknown param. This module
composes conf/ with the same overrides the way DVC does (every combination of a sweep),
then validates the result with the stages' typed params (stroke_risk.params), and names each
unknown key, unknown config-group option or bad value in one line with the keys or options
that exist. When all is well it hands over to `dvc exp run` with the arguments unchanged:

    python -m stroke_risk.commands.exp_run run -S tune.n_trials=10 -n fewer-trials
    make exp ARGS="--queue -S 'model=logreg,xgboost'"
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stroke_risk.params import validate_all

CONFIG_DIR = "conf"  # DVC's hydra.config_dir default, as this project uses it
CONFIG_NAME = "config"
# Overrides of another params file (`file.yaml:key=value`) are not composed by Hydra.
FILE_OVERRIDE_SEPARATOR = ":"


def compose_params(root: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose conf/ with Hydra as `dvc exp run` does (defaults list, overrides, resolved).

    Raises hydra's exceptions for overrides that do not compose.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str((root / CONFIG_DIR).resolve()), version_base=None):
        config = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    OmegaConf.resolve(config)
    composed = OmegaConf.to_container(config)
    assert isinstance(composed, dict)
    return {str(key): value for key, value in composed.items()}


def set_params(arguments: Sequence[str]) -> list[str]:
    """The values of every -S / --set-param in `dvc exp run` arguments, in order."""
    found: list[str] = []
    iterator = iter(arguments)
    for argument in iterator:
        if argument in {"-S", "--set-param"}:
            found.append(next(iterator, ""))
        elif argument.startswith("--set-param="):
            found.append(argument.split("=", 1)[1])
        elif argument.startswith("-S") and len(argument) > 2:
            found.append(argument[2:])
    return found


def sweep_combinations(overrides: Sequence[str]) -> list[list[str]]:
    """Every override list a sweep (`model=a,b`, `range(…)`, `choice(…)`) expands to."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    choices = [
        [f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line]
        for o in parsed
    ]
    return [[str(o) for o in combination] for combination in itertools.product(*choices)]


def known_keys(params: Mapping[str, Any], key: str) -> list[str]:
    """The dotted keys that exist beside `key` (its parent's children), for a fix hint."""
    parts = key.split(".")
    node: Any = params
    for part in parts[:-1]:
        if not isinstance(node, Mapping) or part not in node:
            break
        node = node[part]
    else:
        if isinstance(node, Mapping):
            prefix = ".".join(parts[:-1])
            return [f"{prefix}.{child}" if prefix else str(child) for child in node]
    return [str(section) for section in params]


def group_options(root: Path, group: str) -> list[str]:
    """The options of a config group (conf/<group>/*.yaml); [] if it is not a group."""
    folder = root / CONFIG_DIR / group
    return sorted(path.stem for path in folder.glob("*.yaml")) if folder.is_dir() else []


def override_problem(root: Path, base: Mapping[str, Any], override: str) -> str | None:
    """One line saying why an override does not compose, or None if it does."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    key, _, value = override.lstrip("+~").partition("=")
    try:
        compose_params(root, [override])
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        options = group_options(root, key)
        if options:
            return (
                f"-S {override}: '{value}' is not an option of config group '{key}' "
                f"(options: {', '.join(options)})"
            )
        if not override.startswith("+") and not _has_key(base, key):
            return (
                f"-S {override}: params have no key '{key}' (keys there: "
                f"{', '.join(known_keys(base, key))}); check the spelling (keys are in conf/)"
            )
        return f"-S {override}: {str(error).splitlines()[0]}"
    return None


def check_overrides(root: Path, overrides: Sequence[str]) -> list[str]:
    """Every problem of these -S overrides, one line each; [] when every combination of
    the sweep composes and passes the stages' typed params."""
    from hydra.errors import HydraException

    hydra_overrides = [o for o in overrides if FILE_OVERRIDE_SEPARATOR not in o.split("=")[0]]
    if not hydra_overrides:
        return []
    try:
        combinations = sweep_combinations(hydra_overrides)
    except HydraException as error:
        return [f"-S: cannot parse the overrides: {str(error).splitlines()[0]}"]
    base = compose_params(root)
    problems: list[str] = []
    for override in dict.fromkeys(itertools.chain.from_iterable(combinations)):
        problem = override_problem(root, base, override)
        if problem:
            problems.append(problem)
    if problems:
        return problems
    for combination in combinations:
        params = compose_params(root, combination)
        for problem in validate_all(params) + unknown_family(params) + missing_inputs(root, params):
            line = f"-S {' '.join(combination)}: {problem}"
            if line not in problems:
                problems.append(line)
    return problems


def unknown_family(params: Mapping[str, Any]) -> list[str]:
    """The model family the params name, if no record of stroke_risk.models.families has it
    (the typed params only check it is a name)."""
    from stroke_risk.models.families import UnknownFamily, family_named

    name = (params.get("model") or {}).get("family")
    if not isinstance(name, str) or not name:
        return []  # validate_all reports it
    try:
        family_named(name)
    except UnknownFamily as error:
        return [str(error)]
    return []


def missing_inputs(root: Path, params: Mapping[str, Any]) -> list[str]:
    """The data file the params name, if it does not exist (DVC would only say Errno 2
    after rewriting params.yaml)."""
    raw_path = (params.get("data") or {}).get("raw_path")
    if not isinstance(raw_path, str) or (root / raw_path).is_file():
        return []
    return [
        f"data.raw_path: no such file '{raw_path}' (give the path of a CSV of the schema, "
        "relative to the repository or absolute)"
    ]


def _has_key(params: Mapping[str, Any], key: str) -> bool:
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
