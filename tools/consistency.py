"""Fast consistency checks of the repository, run by pre-commit and `make test`.

`python -m tools.consistency` runs every check in CHECKS and prints one line per problem;
it exits 1 when any check fails. Each check is a function `(root) -> list of problems`,
so a new one is a function appended to CHECKS.

`python -m tools.consistency --write-params` rewrites params.yaml as the composition of conf/
(what `dvc exp run` does before running the pipeline).
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = "params.yaml"
# Differences listed in a failure line before "…".
SHOWN_DIFFERENCES = 4

Check = Callable[[Path], list[str]]


def compose_conf(root: Path) -> dict[str, Any]:
    """Compose conf/ with Hydra the way `dvc exp run` does (defaults list, resolved)."""
    from stroke_risk.tracking.experiment_overrides import compose_params

    return compose_params(root)


def differences(expected: Any, actual: Any, prefix: str = "") -> list[str]:
    """Dotted keys where `actual` differs from `expected`, with both values; [] when equal."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        found: list[str] = []
        for key in list(expected) + [k for k in actual if k not in expected]:
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in actual:
                found.append(f"{name} missing (conf/ has {expected[key]!r})")
            elif key not in expected:
                found.append(f"{name} not in conf/ (params.yaml has {actual[key]!r})")
            else:
                found += differences(expected[key], actual[key], name)
        return found
    if expected != actual or type(expected) is not type(actual):
        return [f"{prefix or '<top>'}: conf/ {expected!r}, {PARAMS_FILE} {actual!r}"]
    return []


def check_params_composition(root: Path) -> list[str]:
    """params.yaml must equal the Hydra composition of conf/ (so `dvc repro` and
    `dvc exp run` run the same configuration)."""
    try:
        params = yaml.safe_load((root / PARAMS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{PARAMS_FILE} not found; run `python -m tools.consistency --write-params`"]
    except yaml.YAMLError as error:
        return [f"{PARAMS_FILE} is not valid YAML ({str(error).splitlines()[0]})"]
    try:
        composed = compose_conf(root)
    except Exception as error:  # noqa: BLE001 - any Hydra failure is reported as one line
        return [f"conf/ does not compose ({str(error).splitlines()[0]}); fix conf/config.yaml"]
    found = differences(composed, params)
    if not found:
        return []
    shown = "; ".join(found[:SHOWN_DIFFERENCES]) + (" …" if len(found) > SHOWN_DIFFERENCES else "")
    return [
        f"{PARAMS_FILE} is not the composition of conf/ ({shown}); edit conf/, then run "
        "`python -m tools.consistency --write-params`"
    ]


def write_params(root: Path) -> None:
    """Rewrite params.yaml from conf/ (atomically)."""
    from stroke_risk.io import write_text

    composed = compose_conf(root)
    write_text(root / PARAMS_FILE, yaml.safe_dump(composed, sort_keys=False))


def check_stage_dependencies(root: Path) -> list[str]:
    """Every DVC stage lists every project file it runs (derived from the imports)."""
    from stroke_risk.code_deps import undeclared_code_deps

    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    return undeclared_code_deps(stages, root)


def check_params_types(root: Path) -> list[str]:
    """params.yaml fits the stages' typed, strict sections."""
    from stroke_risk.params import validate_all

    return validate_all(yaml.safe_load((root / PARAMS_FILE).read_text()))


def check_import_layers(root: Path) -> list[str]:
    """The import contracts of pyproject.toml (layers, no cycles between rooms) hold.

    import-linter reads root's packages (it runs in root); each problem is one broken
    import chain as import-linter prints it, e.g. `stroke_risk.data is not allowed to import
    stroke_risk.models: - stroke_risk.data.prepared -> stroke_risk.models.pipelines (l.9)`.
    """
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=root, capture_output=True, text=True
    )
    if result.returncode == 0:
        return []
    return broken_import_chains(result.stdout + result.stderr)


def broken_import_chains(report: str) -> list[str]:
    """One line per broken rule of import-linter's `Broken contracts` section, with the import
    chains that break it (its whole output when that section is missing, e.g. a bad config)."""
    _, found, broken = report.partition("Broken contracts")
    problems: list[str] = []
    for paragraph in (broken if found else report).split("\n\n"):
        line = " ".join(paragraph.split())
        if not line or "---" in line:  # empty, or a contract's underlined title
            continue
        if line.startswith("- ") and problems:
            problems[-1] += " " + line
        else:
            problems.append(line)
    return problems


# The package's command-line programs live here; every other module is library code.
COMMANDS_FOLDER = "stroke_risk/commands"


def check_programs_in_commands(root: Path) -> list[str]:
    """No library module of stroke_risk/ is a program: argparse and `__main__` blocks live in
    stroke_risk/commands/ (the library is called with typed arguments, never a command line)."""
    problems = []
    for path in sorted((root / "stroke_risk").rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(f"{COMMANDS_FOLDER}/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if _imports_argparse(tree) or _has_main_block(tree):
            problems.append(
                f"{relative} is a command-line program (argparse or a __main__ block): move the "
                f"program to {COMMANDS_FOLDER}/ and keep the library functions it calls here"
            )
    return problems


def _imports_argparse(tree: ast.Module) -> bool:
    return any(
        (isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names))
        or (isinstance(node, ast.ImportFrom) and node.module == "argparse")
        for node in ast.walk(tree)
    )


def _has_main_block(tree: ast.Module) -> bool:
    """An `if __name__ == "__main__":` at module level."""
    return any(
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        for node in tree.body
    )


CHECKS: list[tuple[str, Check]] = [
    ("params.yaml is the composition of conf/", check_params_composition),
    ("dvc.yaml deps match the code", check_stage_dependencies),
    ("params.yaml fits the typed sections", check_params_types),
    ("imports follow the layers in pyproject.toml", check_import_layers),
    ("the library holds no command-line program", check_programs_in_commands),
]


def run_checks(root: Path, checks: list[tuple[str, Check]] = CHECKS) -> list[str]:
    """Run every check; return its problems prefixed by the check's name."""
    return [f"{name}: {problem}" for name, check in checks for problem in check(root)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument(
        "--write-params", action="store_true", help="rewrite params.yaml from conf/ and exit"
    )
    args = parser.parse_args(argv)
    if args.write_params:
        write_params(args.root)
        print(f"wrote {args.root / PARAMS_FILE} from conf/")
        return 0
    problems = run_checks(args.root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"consistency: {len(CHECKS)} check(s) passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
