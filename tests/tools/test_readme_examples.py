"""The README's generated blocks: command outputs on the committed reports, the module layout."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tools.readme_examples import (
    LAYOUT_FOLDERS,
    README,
    layout_block,
    module_summary,
    package_rooms,
    regenerated,
    stale_blocks,
)


@pytest.mark.integration
def test_every_readme_output_block_is_current() -> None:
    assert stale_blocks(REPO_ROOT) == []


@pytest.mark.integration
def test_a_hand_edited_figure_is_caught_and_regenerated(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "reports", tmp_path / "reports")
    text = (REPO_ROOT / README).read_text(encoding="utf-8")
    current = next(line for line in text.splitlines() if line.startswith("Discrimination:"))
    edited = current.replace("ROC-AUC 0.", "ROC-AUC 9.", 1)
    (tmp_path / README).write_text(text.replace(current, edited), encoding="utf-8")
    (problem,) = stale_blocks(tmp_path)
    assert "python -m stroke_risk.commands.summary" in problem
    assert regenerated((tmp_path / README).read_text(encoding="utf-8"), tmp_path) == text


def test_the_layout_lists_every_module_once_in_one_line() -> None:
    block = layout_block(REPO_ROOT)
    listed = re.findall(r"^ *- `([\w/]+\.py)`: \S", block, re.MULTILINE)
    modules = sorted(
        path.relative_to(REPO_ROOT).as_posix()
        for folder in LAYOUT_FOLDERS
        for path in (REPO_ROOT / folder).rglob("*.py")
        if path.name != "__init__.py"
    )
    assert sorted(listed) == modules
    assert (
        block.count("\n") == len(modules) + len(LAYOUT_FOLDERS) + len(package_rooms(REPO_ROOT)) + 1
    )  # + the ground floor's line
    # The rooms go from the ground floor up, as the import layers order them.
    rooms = re.findall(r"^  - `stroke_risk/(\w+)/`", block, re.MULTILINE)
    assert rooms.index("data") < rooms.index("evaluation") < rooms.index("models")
    assert rooms.index("models") < rooms.index("reports") < rooms.index("commands")


def test_a_module_without_a_one_line_summary_is_refused(tmp_path: Path) -> None:
    module = tmp_path / "thing.py"
    module.write_text('"""Holds things.\n\nMore about them."""\n')
    assert module_summary(module) == "Holds things."
    module.write_text('"""Holds things that need\ntwo lines to say."""\n')
    with pytest.raises(ValueError, match="thing.py: the docstring's first paragraph is several"):
        module_summary(module)
    module.write_text("import os\n")
    with pytest.raises(ValueError, match="thing.py: no module docstring"):
        module_summary(module)


@pytest.mark.integration
def test_a_hand_edited_layout_line_is_caught_and_regenerated(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "reports", tmp_path / "reports")
    text = (REPO_ROOT / README).read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if "`stroke_risk/ports.py`:" in line)
    (tmp_path / README).write_text(text.replace(line, line + " (fast)"), encoding="utf-8")
    (problem,) = stale_blocks(tmp_path)
    assert problem == ("README.md: the module layout is stale: run python -m tools.readme_examples")
    assert regenerated((tmp_path / README).read_text(encoding="utf-8"), tmp_path) == text
