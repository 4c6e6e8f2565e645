"""A benchmark's table and note, printed and (with --write-readme) put into a README block.

The block sits between `<!-- NAME:start -->` and `<!-- NAME:end -->`; everything outside the
markers is kept, so the README's figures are the benchmark's last output, never typed by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def with_block(text: str, name: str, body: str) -> str:
    """text with the block NAME's contents replaced by body; ValueError naming the missing
    markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"lacks the {start} / {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def print_table(table: str, note: str, *, readme: Path | None = None, block: str = "") -> None:
    """Print the table, a blank line and the note; with readme, also write both into its
    block (exit with one line if the README lacks the block's markers)."""
    print(table)
    print()
    print(note)
    if readme is None:
        return
    try:
        text = with_block(readme.read_text(), block, f"{table}\n\n{note}")
    except ValueError as error:
        sys.exit(f"{readme} {error}")
    readme.write_text(text)
    print(f"wrote the table into {readme.relative_to(REPO_ROOT)}")
