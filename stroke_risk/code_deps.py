"""Which project source files a module runs: the import closure, derived from the code.

Used to check that every DVC stage declares every file it runs (tests and the pre-commit
consistency check) and to fingerprint tuning code, so neither is a list kept by hand.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stroke_risk import paths

PROJECT_PACKAGES = ("stroke_risk", "stages", "app")


def imported_modules(source: str) -> set[str]:
    """Every absolute module name imported anywhere in `source`, lazy imports included.

    `from a.b import c` yields both `a.b` and `a.b.c` (c may be a submodule); callers keep
    the names that exist as files.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_file(name: str, root: Path) -> Path | None:
    """The project file defining module `name`, or None for third-party/stdlib modules."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _only_a_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def import_closure(entry_points: Iterable[str], root: Path) -> list[str]:
    """Project files (relative POSIX paths, sorted) that the entry modules import, transitively.

    Package `__init__.py` files that hold nothing but a docstring are left out: importing a
    room runs no code of its own.
    """
    pending = [name for name in entry_points]
    seen: set[Path] = set()
    while pending:
        path = module_file(pending.pop(), root)
        if path is None or path in seen:
            continue
        seen.add(path)
        pending.extend(imported_modules(path.read_text()))
    files = {p for p in seen if p.name != "__init__.py" or not _only_a_docstring(p)}
    return sorted(p.relative_to(root).as_posix() for p in files)


def files_digest(paths: Iterable[str], root: Path) -> str:
    """sha256 over the named files' paths and bytes: changes when any of that code changes."""
    digest = hashlib.sha256()
    for relative in sorted(paths):
        digest.update(relative.encode() + b"\0" + (root / relative).read_bytes() + b"\0")
    return digest.hexdigest()


# Unpickling a model runs the code of the classes inside it: a stage that loads the model
# file depends on the modules that define them.
PICKLED_ARTIFACTS = {paths.MODEL: ("stroke_risk.models.pipelines",)}


def stage_code_files(stage: Mapping[str, Any], root: Path) -> list[str]:
    """Project files a dvc.yaml stage runs: its `python -m` module's closure, plus the code
    of the classes in any pickled artifact it reads."""
    command = str(stage["cmd"]).split()
    entry = [command[command.index("-m") + 1]] if "-m" in command else []
    for dep in stage.get("deps", []):
        entry.extend(PICKLED_ARTIFACTS.get(str(dep), ()))
    return import_closure(entry, root)


def undeclared_code_deps(stages: Mapping[str, Any], root: Path) -> list[str]:
    """One line per code file a stage runs but does not list in its deps ([] if none)."""
    problems = []
    for name, stage in stages.items():
        declared = {str(dep) for dep in stage.get("deps", [])}
        for path in stage_code_files(stage, root):
            if path not in declared:
                problems.append(f"stage '{name}' runs {path} but dvc.yaml does not list it in deps")
    return problems
