"""data/README.md's column table describes the schema's fields (it is written by hand)."""

from __future__ import annotations

import re

from stroke_risk.data.schema import (
    FEATURES,
    ID_COLUMN,
    TARGET,
    BinaryField,
    CategoricalField,
    NumericField,
)
from tests.conftest import REPO_ROOT

DATASHEET = REPO_ROOT / "data" / "README.md"


def column_rows() -> dict[str, str]:
    """The rows of the datasheet's "Columns" table, by column name."""
    section = DATASHEET.read_text(encoding="utf-8").split("## Columns", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        named = re.match(r"\| `([^`]+)` \|", line)
        if named:
            rows[named.group(1)] = line
    return rows


def test_the_column_table_lists_the_schema_in_order() -> None:
    assert list(column_rows()) == [ID_COLUMN, *(spec.name for spec in FEATURES), TARGET]


def test_each_row_states_what_the_schema_accepts() -> None:
    rows = column_rows()
    for spec in FEATURES:
        row = rows[spec.name]
        if isinstance(spec, CategoricalField):
            missing = [c for c in spec.categories if f"`{c}`" not in row]
            assert not missing, f"data/README.md {spec.name}: categories {missing} not listed"
        elif isinstance(spec, BinaryField):
            assert "0 or 1" in row, spec.name
        else:
            assert isinstance(spec, NumericField)
            accepted = f"{spec.minimum:g}–{spec.maximum:g}"
            assert row.rstrip(" |").endswith(accepted), f"{spec.name}: expected {accepted}"
