"""The README's command outputs are the commands' real output on the committed reports."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import REPO_ROOT
from tools.readme_examples import README, regenerated, stale_blocks


def test_every_readme_output_block_is_current() -> None:
    assert stale_blocks(REPO_ROOT) == []


def test_a_hand_edited_figure_is_caught_and_regenerated(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "reports", tmp_path / "reports")
    text = (REPO_ROOT / README).read_text(encoding="utf-8")
    current = next(line for line in text.splitlines() if line.startswith("Discrimination:"))
    edited = current.replace("ROC-AUC 0.", "ROC-AUC 9.", 1)
    (tmp_path / README).write_text(text.replace(current, edited), encoding="utf-8")
    (problem,) = stale_blocks(tmp_path)
    assert "python -m stroke_risk.commands.summary" in problem
    assert regenerated((tmp_path / README).read_text(encoding="utf-8"), tmp_path) == text
