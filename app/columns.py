"""Validated records held column-wise: the ten schema fields as numpy arrays.

This is what the compiled model consumes and what the validators produce, for one
request record, a 10,000-record batch or a chunk of a CSV file alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stroke_risk.data.schema import (
    BINARY_FEATURES,
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    FEATURES_BY_NAME,
    NUMERIC_FEATURES,
    CategoricalField,
)

if TYPE_CHECKING:
    import pandas as pd


def schema_categories(name: str) -> tuple[str, ...]:
    """Return the allowed categories of a categorical schema field, in schema order."""
    spec = FEATURES_BY_NAME[name]
    assert isinstance(spec, CategoricalField)
    return spec.categories


@dataclass(frozen=True)
class FeatureColumns:
    """Valid values of n_rows records.

    numeric: float64 arrays, NaN where a nullable field is missing;
    binary: int64 arrays of 0/1;
    categorical: intp codes into the field's schema categories (schema_categories).
    """

    numeric: dict[str, np.ndarray]
    binary: dict[str, np.ndarray]
    categorical: dict[str, np.ndarray]
    n_rows: int

    def take(self, index: np.ndarray) -> FeatureColumns:
        """Return the rows selected by an integer index or boolean mask, in that order."""
        picked = {
            kind: {name: values[index] for name, values in group.items()}
            for kind, group in (
                ("numeric", self.numeric),
                ("binary", self.binary),
                ("categorical", self.categorical),
            )
        }
        n_rows = len(next(iter(picked["numeric"].values())))
        return FeatureColumns(n_rows=n_rows, **picked)

    def category_labels(self, name: str) -> np.ndarray:
        """Return the categorical field as an object array of strings."""
        return np.asarray(schema_categories(name), dtype=object)[self.categorical[name]]

    def to_frame(self) -> pd.DataFrame:
        """Return a DataFrame of the ten fields as load_dataset types them (bmi NaN if missing).

        This is the reference pipeline's input, used by the self-check and the tests.
        """
        import pandas as pd

        data: dict[str, Any] = {}
        for name in FEATURE_NAMES:
            if name in self.numeric:
                data[name] = self.numeric[name]
            elif name in self.binary:
                data[name] = self.binary[name]
            else:
                data[name] = self.category_labels(name)
        return pd.DataFrame(data, columns=list(FEATURE_NAMES))

    def to_records(self) -> list[dict[str, Any]]:
        """Return one dict per row with the ten canonical fields (missing bmi as None)."""
        lists: dict[str, list[Any]] = {}
        for name in FEATURE_NAMES:
            if name in self.numeric:
                values = self.numeric[name]
                lists[name] = [None if v != v else v for v in values.tolist()]
            elif name in self.binary:
                lists[name] = self.binary[name].tolist()
            else:
                lists[name] = self.category_labels(name).tolist()
        return [
            dict(zip(FEATURE_NAMES, row, strict=True)) for row in zip(*lists.values(), strict=True)
        ]


def empty_columns(n_rows: int) -> FeatureColumns:
    """Return placeholder columns of n_rows (NaN, 0, code 0) to be filled row by row."""
    return FeatureColumns(
        numeric={name: np.full(n_rows, np.nan) for name in NUMERIC_FEATURES},
        binary={name: np.zeros(n_rows, dtype=np.int64) for name in BINARY_FEATURES},
        categorical={name: np.zeros(n_rows, dtype=np.intp) for name in CATEGORICAL_FEATURES},
        n_rows=n_rows,
    )


def set_row(columns: FeatureColumns, row: int, values: dict[str, Any]) -> None:
    """Write one record's clean values (validate_record output) into row of columns."""
    for name, value in values.items():
        if name in columns.numeric:
            columns.numeric[name][row] = np.nan if value is None else value
        elif name in columns.binary:
            columns.binary[name][row] = value
        else:
            columns.categorical[name][row] = schema_categories(name).index(value)
