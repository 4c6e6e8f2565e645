"""Score a CSV file with the served model: ``python -m app.batch IN.csv OUT.csv``.

The file is streamed in chunks (``--chunk-rows``), so its size is bounded by the disk,
not by memory. Each row is validated exactly as a /predict record is (same schema, same
messages; cells are read like the training data: "", "N/A", "NA", "n/a", "NaN", "nan"
mean missing, numbers as pandas.to_numeric parses them). Valid rows are written to OUT
with every input column plus ``stroke_probability`` and ``stroke_prediction`` (1 when the
probability reaches the model's decision threshold); the others go to the reject file
(default OUT with ``.rejects.csv``) as ``line, reason`` followed by the row as read.
Nothing is dropped: rows in = scored + rejected, and the summary line says so.

Columns other than the ten fields (an ``id``, the ``stroke`` label, ...) are carried
through unchanged. Both outputs are written to temporary files and renamed at the end,
so a failed run leaves no partial output. Exit status: 0 done, 1 model cannot be
loaded, 2 unusable input file or arguments.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from app.validation import validate_columns
from stroke_risk.data.schema import (
    FEATURE_NAMES,
    FEATURES,
    FIELD_ALIASES,
    CategoricalField,
    NumericField,
)

DEFAULT_CHUNK_ROWS = 50_000
OUTPUT_COLUMNS = ("stroke_probability", "stroke_prediction")
REJECT_COLUMNS = ("line", "reason")


class InputFileError(Exception):
    """The input file or the arguments cannot be used at all (one-line message)."""


@dataclass
class BatchSummary:
    """Row counts of one run; rows_in == scored + rejected."""

    rows_in: int = 0
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0

    def line(self, output: Path, rejects: Path) -> str:
        """Return the one-line summary printed at the end of a run."""
        rate = self.rows_in / self.seconds * 60 if self.seconds else 0.0
        return (
            f"{self.rows_in} rows in: {self.scored} scored -> {output}, {self.rejected} "
            f"rejected -> {rejects} ({self.seconds:.1f} s, {rate:,.0f} rows/min)"
        )


def missing_markers() -> frozenset[str]:
    """Return the cell texts that mean "missing", shared with the training data reader."""
    from stroke_risk.data.load import MISSING_MARKERS

    return frozenset(MISSING_MARKERS)


def feature_positions(header: Sequence[str]) -> dict[str, int]:
    """Return {canonical field: column index}; raise InputFileError for a bad header."""
    positions: dict[str, int] = {}
    for index, name in enumerate(header):
        canonical = FIELD_ALIASES.get(name.strip(), name.strip())
        if canonical in positions:
            raise InputFileError(f"column {canonical!r} appears twice in the header")
        if canonical in FEATURE_NAMES:
            positions[canonical] = index
    required = [
        spec.name
        for spec in FEATURES
        if spec.name not in positions and not (isinstance(spec, NumericField) and spec.nullable)
    ]
    if required:
        raise InputFileError(
            f"missing column(s) {', '.join(required)}; the header must name the fields "
            f"{', '.join(FEATURE_NAMES)}"
        )
    clashes = [name for name in OUTPUT_COLUMNS if name in header]
    if clashes:
        raise InputFileError(f"the input already has column(s) {', '.join(clashes)}")
    return positions


def read_chunks(reader: Any, chunk_rows: int) -> Iterator[tuple[list[list[str]], list[int]]]:
    """Yield (rows, first file line of each row) in chunks; blank lines are skipped."""
    rows: list[list[str]] = []
    lines: list[int] = []
    previous_line = reader.line_num
    for row in reader:
        if row:
            rows.append(row)
            lines.append(previous_line + 1)
        previous_line = reader.line_num
        if len(rows) >= chunk_rows:
            yield rows, lines
            rows, lines = [], []
    if rows:
        yield rows, lines


def json_like_column(
    spec: Any, cells: Sequence[str] | None, n_rows: int, missing: frozenset[str]
) -> list[Any]:
    """Return the column's cells as the JSON values a /predict client would send.

    Missing markers become None, parseable numbers of numeric/binary fields floats, and
    anything else stays the text, so the validator reports it against the field.
    """
    if cells is None:
        return [None] * n_rows
    if isinstance(spec, CategoricalField):
        return [None if cell in missing else cell for cell in cells]
    import pandas as pd

    numbers = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(float)
    return [
        None if cell in missing else number if number == number else cell
        for cell, number in zip(cells, numbers.tolist(), strict=True)
    ]


class RowRecords(Sequence[dict[str, Any]]):
    """Row i of the JSON-like columns as a record, built only when validate_record asks."""

    def __init__(self, values: dict[str, list[Any]], n_rows: int):
        self.values = values
        self.n_rows = n_rows

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, row: Any) -> Any:
        return {name: column[row] for name, column in self.values.items()}


def reject_reason(errors: Sequence[Any]) -> str:
    """Return 'field: message; field: message' for a reject row."""
    return "; ".join(f"{error.field}: {error.message}" for error in errors)


def score_chunk(
    model: Any,
    rows: list[list[str]],
    lines: list[int],
    width: int,
    positions: dict[str, int],
    missing: frozenset[str],
    scored_writer: Any,
    reject_writer: Any,
    summary: BatchSummary,
) -> None:
    """Validate and score one chunk, writing each row to the output or the reject file."""
    shaped = [row for row in rows if len(row) == width]
    shaped_lines = [line for row, line in zip(rows, lines, strict=True) if len(row) == width]
    rejects = [
        (line, f"expected {width} fields, got {len(row)}", row)
        for row, line in zip(rows, lines, strict=True)
        if len(row) != width
    ]
    summary.rows_in += len(rows)
    if shaped:
        cells = list(zip(*shaped, strict=True))
        values = {
            spec.name: json_like_column(
                spec,
                cells[positions[spec.name]] if spec.name in positions else None,
                len(shaped),
                missing,
            )
            for spec in FEATURES
        }
        validation = validate_columns(
            values, RowRecords(values, len(shaped)), np.ones(len(shaped), dtype=bool)
        )
        good = validation.valid_mask()
        probability, decision = model.predict(validation.columns.take(good))
        scored_rows = [row for row, ok in zip(shaped, good.tolist(), strict=True) if ok]
        scored_writer.writerows(
            [*row, p, int(d)]
            for row, p, d in zip(scored_rows, probability.tolist(), decision.tolist(), strict=True)
        )
        summary.scored += len(scored_rows)
        rejects += [
            (shaped_lines[row], reject_reason(errors), shaped[row])
            for row, errors in validation.row_errors.items()
        ]
    rejects.sort(key=lambda reject: reject[0])
    reject_writer.writerows([line, reason, *row] for line, reason, row in rejects)
    summary.rejected += len(rejects)


def open_source(source: Path) -> TextIO:
    """Return the input opened as text (BOM dropped, undecodable bytes kept as escapes)."""
    try:
        return open(source, newline="", encoding="utf-8-sig", errors="surrogateescape")
    except OSError as error:
        raise InputFileError(f"cannot read it: {error.strerror}") from None


def score_file(
    model: Any, source: Path, output: Path, rejects: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> BatchSummary:
    """Score every row of source into output and rejects; return the row counts.

    Raises InputFileError when source is missing, empty or has no usable header.
    """
    from stroke_risk.io import atomic_path

    started = time.perf_counter()
    summary = BatchSummary()
    missing = missing_markers()
    with (
        open_source(source) as handle,
        atomic_path(output) as scored_path,
        atomic_path(rejects) as reject_path,
    ):
        reader = csv.reader(handle, skipinitialspace=True)
        header = next(reader, None)
        if not header:
            raise InputFileError("the file is empty; expected a header line")
        positions = feature_positions(header)
        with (
            open(scored_path, "w", newline="", encoding="utf-8", errors="surrogateescape") as out,
            open(reject_path, "w", newline="", encoding="utf-8", errors="surrogateescape") as bad,
        ):
            scored_writer = csv.writer(out, lineterminator="\n")
            reject_writer = csv.writer(bad, lineterminator="\n")
            scored_writer.writerow([*header, *OUTPUT_COLUMNS])
            reject_writer.writerow([*REJECT_COLUMNS, *header])
            for rows, lines in read_chunks(reader, chunk_rows):
                score_chunk(
                    model,
                    rows,
                    lines,
                    len(header),
                    positions,
                    missing,
                    scored_writer,
                    reject_writer,
                    summary,
                )
    summary.seconds = time.perf_counter() - started
    return summary


def default_rejects_path(output: Path) -> Path:
    """Return OUT.rejects.csv beside OUT (OUT's .csv suffix replaced)."""
    stem = output.name[:-4] if output.name.lower().endswith(".csv") else output.name
    return output.with_name(f"{stem}.rejects.csv")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.batch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("input", type=Path, help="CSV with a header naming the input fields")
    parser.add_argument("output", type=Path, help="CSV of scored rows")
    parser.add_argument(
        "--rejects", type=Path, help="CSV of invalid rows (default OUT.rejects.csv)"
    )
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows per chunk")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (messages are one line on stderr)."""
    from app.artifacts import ArtifactError
    from app.model import load_model
    from app.settings import Settings, SettingsError

    args = parse_args(argv)
    if args.chunk_rows < 1:
        print("error: --chunk-rows must be at least 1", file=sys.stderr)
        return 2
    rejects = args.rejects or default_rejects_path(args.output)
    if len({args.input.resolve(), args.output.resolve(), rejects.resolve()}) != 3:
        print(
            "error: input, output and reject files must be three different files", file=sys.stderr
        )
        return 2
    try:
        model = load_model(Settings.from_env(), explain=False)
    except (ArtifactError, SettingsError) as error:
        print(f"error: cannot load the model: {error}", file=sys.stderr)
        return 1
    try:
        summary = score_file(model, args.input, args.output, rejects, args.chunk_rows)
    except InputFileError as error:
        print(f"error: {args.input}: {error}", file=sys.stderr)
        return 2
    print(f"model {model.version} ({model.family}, threshold {model.threshold:g})", file=sys.stderr)
    print(summary.line(args.output, rejects), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
