"""The benchmarks' README blocks: replaced between their markers, everything else kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import alerts, updating
from benchmarks.readme_table import print_table, with_block

TEXT = "intro\n<!-- demo:start -->\nold table\n<!-- demo:end -->\noutro\n"


def test_only_the_block_between_the_markers_changes() -> None:
    assert with_block(TEXT, "demo", "| a |\n\nnote") == (
        "intro\n<!-- demo:start -->\n| a |\n\nnote\n<!-- demo:end -->\noutro\n"
    )


def test_a_missing_marker_is_named() -> None:
    with pytest.raises(ValueError, match="<!-- other:start --> / <!-- other:end -->"):
        with_block(TEXT, "other", "x")


@pytest.mark.parametrize(
    ("readme", "name"),
    [(alerts.README, alerts.README_BLOCK), (updating.README, updating.README_BLOCK)],
    ids=["alerts", "updating"],
)
def test_each_benchmark_block_is_in_its_readme_and_rewrites_to_itself(
    readme: Path, name: str
) -> None:
    text = readme.read_text()
    start, end = f"<!-- {name}:start -->\n", f"\n<!-- {name}:end -->"
    body = text.split(start, 1)[1].split(end, 1)[0]
    assert with_block(text, name, body) == text


def test_print_table_writes_the_printed_table_into_the_readme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("benchmarks.readme_table.REPO_ROOT", tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(TEXT)
    print_table("| a |", "note", readme=readme, block="demo")
    assert readme.read_text() == with_block(TEXT, "demo", "| a |\n\nnote")
    assert capsys.readouterr().out == "| a |\n\nnote\nwrote the table into README.md\n"
    missing = tmp_path / "OTHER.md"
    missing.write_text("no markers\n")
    with pytest.raises(SystemExit, match="OTHER.md lacks the <!-- demo:start -->"):
        print_table("| a |", "note", readme=missing, block="demo")
    assert missing.read_text() == "no markers\n"
