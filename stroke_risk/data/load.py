"""Reading, validating and splitting the raw stroke CSV."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from stroke_risk.cli import InputProblemsError
from stroke_risk.data.schema import (
    BINARY_FEATURES,
    FEATURE_NAMES,
    FEATURES,
    ID_COLUMN,
    TARGET,
    BinaryField,
    CategoricalField,
    NumericField,
    describe_allowed,
)

# Only these spellings mean "missing": pandas' default list would also turn a category
# such as "None" into NaN and hide a data error.
MISSING_MARKERS = ["", "N/A", "NA", "n/a", "NaN", "nan"]
EXPECTED_COLUMNS = (*FEATURE_NAMES, TARGET)


class DataValidationError(InputProblemsError):
    """Raised when a raw file does not match the schema; the message lists every problem."""


def read_raw_csv(path: str | Path) -> pd.DataFrame:
    """Read a raw CSV of this schema as strings (any column order, LF or CRLF endings)."""
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=MISSING_MARKERS,
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise DataValidationError([f"{path}: file is empty"]) from None
    except pd.errors.ParserError as error:
        raise DataValidationError([f"{path}: not a readable CSV ({error})"]) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _line_numbers(mask: pd.Series, limit: int = 5) -> str:
    # +2: one for the header line, one because file lines count from 1.
    lines = [str(int(i) + 2) for i in mask[mask].index[:limit]]
    return ", ".join(lines) + (", ..." if int(mask.sum()) > limit else "")


def _problem(column: str, mask: pd.Series, what: str) -> str:
    count = int(mask.sum())
    return f"column '{column}': {count} row(s) {what} (file lines {_line_numbers(mask)})"


def validate_raw_frame(raw: pd.DataFrame, *, target_required: bool = True) -> pd.DataFrame:
    """Check a raw string frame against the schema and return it typed.

    Returns the ten features plus the target with proper dtypes (an ``id`` column is
    dropped). Raises DataValidationError naming each bad column with its offending row
    count and the first file line numbers, so the whole file can be fixed in one pass.
    target_required=False (inputs that are scored, not trained on): the target column may
    be absent, and when present may hold a single class.
    """
    problems: list[str] = []
    frame = raw.drop(columns=[ID_COLUMN], errors="ignore")
    required = EXPECTED_COLUMNS if target_required else FEATURE_NAMES
    missing = [c for c in required if c not in frame.columns]
    if missing:
        problems.append("missing column(s): " + ", ".join(missing))
    unknown = [c for c in frame.columns if c not in EXPECTED_COLUMNS]
    if unknown:
        problems.append(
            "unknown column(s): "
            + ", ".join(unknown)
            + f"; expected {', '.join(EXPECTED_COLUMNS)} and optionally '{ID_COLUMN}'"
        )
    if problems:
        raise DataValidationError(problems)
    if frame.empty:
        raise DataValidationError(["file has a header but no data rows"])

    typed = pd.DataFrame(index=frame.index)
    for spec in FEATURES:
        column = frame[spec.name]
        absent = column.isna()
        if isinstance(spec, (NumericField, BinaryField)):
            numbers = pd.to_numeric(column, errors="coerce")
            not_numeric = numbers.isna() & ~absent
            if not_numeric.any():
                examples = ", ".join(repr(v) for v in column[not_numeric].unique()[:3])
                problems.append(_problem(spec.name, not_numeric, f"not numeric: {examples}"))
            if isinstance(spec, NumericField):
                bad = numbers.notna() & ~numbers.between(spec.minimum, spec.maximum)
                what = f"out of range; expected {describe_allowed(spec)}"
            else:
                bad = numbers.notna() & ~numbers.isin(spec.values)
                what = f"not {describe_allowed(spec)}"
            if bad.any():
                problems.append(_problem(spec.name, bad, what))
            typed[spec.name] = numbers.astype(float if isinstance(spec, NumericField) else "Int64")
        else:
            assert isinstance(spec, CategoricalField)
            bad = ~column.isin(spec.categories) & ~absent
            if bad.any():
                examples = ", ".join(repr(v) for v in column[bad].unique()[:3])
                problems.append(
                    _problem(
                        spec.name,
                        bad,
                        f"with unknown value(s) {examples}; expected " + describe_allowed(spec),
                    )
                )
            typed[spec.name] = column
        nullable = isinstance(spec, NumericField) and spec.nullable
        if absent.any() and not nullable:
            problems.append(_problem(spec.name, absent, "missing"))

    if TARGET not in frame.columns:
        if problems:
            raise DataValidationError(problems)
        typed[list(BINARY_FEATURES)] = typed[list(BINARY_FEATURES)].astype(int)
        return typed.reset_index(drop=True)
    target = pd.to_numeric(frame[TARGET], errors="coerce")
    bad_target = ~target.isin([0, 1])
    if bad_target.any():
        examples = ", ".join(repr(v) for v in frame[TARGET][bad_target].unique()[:3])
        problems.append(_problem(TARGET, bad_target, f"not 0 or 1: {examples}"))
    elif target_required and int(target.sum()) == 0:
        problems.append(f"column '{TARGET}': no positive rows; cannot train a classifier")
    elif target_required and int(target.sum()) == len(target):
        problems.append(f"column '{TARGET}': no negative rows; cannot train a classifier")
    if problems:
        raise DataValidationError(problems)
    typed[TARGET] = target.astype(int)
    typed[list(BINARY_FEATURES)] = typed[list(BINARY_FEATURES)].astype(int)
    return typed.reset_index(drop=True)


def load_dataset(path: str | Path) -> pd.DataFrame:
    """Read and validate a raw CSV; see validate_raw_frame for the contract."""
    return validate_raw_frame(read_raw_csv(path))


def drop_exact_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop rows identical in every column, so one patient cannot sit in train and test."""
    return frame.drop_duplicates().reset_index(drop=True)


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame


def stratified_split(frame: pd.DataFrame, *, test_size: float, seed: int) -> Split:
    """Split stratified on the target, deterministically for a given seed."""
    train, test = train_test_split(
        frame, test_size=test_size, random_state=seed, stratify=frame[TARGET]
    )
    return Split(train.reset_index(drop=True), test.reset_index(drop=True))


# The shipped data sets, recognised by content (not by a config name that an override can
# leave stale): sha256 of the file's bytes -> the name the datasheet and model card use.
KNOWN_DATASETS = {
    "c6580041b792045912ab10350f4a8f0e0effd8df4e7a0271b11780356c9aa9d7": "brain",
    "644d473b05d2797006bd94865e4f8bb057f0c721617911613c82c8fcfc707420": "healthcare",
}


def data_provenance(path: str | Path, dataset: pd.DataFrame) -> dict[str, object]:
    """Where a data set came from and what it holds, from the file that was actually read."""
    sha256 = file_sha256(path)
    return {
        "source": Path(path).name,
        "raw_path": str(path),
        "raw_sha256": sha256,
        "known_dataset": KNOWN_DATASETS.get(sha256),
        "missing_values": {
            column: int(count) for column, count in dataset.isna().sum().items() if count
        },
    }


def data_summary(
    path: str | Path, dataset: pd.DataFrame, deduplicated: pd.DataFrame, split: Split
) -> dict[str, object]:
    """reports/data_summary.json: provenance of the raw file, the rows it held, kept and put
    in each split, and the strokes among them."""
    return {
        **data_provenance(path, dataset),
        "n_rows_raw": len(dataset),
        "duplicates_dropped": len(dataset) - len(deduplicated),
        "n_rows": len(deduplicated),
        "n_positive": int(deduplicated[TARGET].sum()),
        "prevalence": round(float(deduplicated[TARGET].mean()), 6),
        "n_train": len(split.train),
        "n_test": len(split.test),
        "n_positive_train": int(split.train[TARGET].sum()),
        "n_positive_test": int(split.test[TARGET].sum()),
        "bmi_missing": int(deduplicated["bmi"].isna().sum()),
    }


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (used to tie a model to its training data)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_md5(path: str | Path) -> str:
    """Hex md5 of a file's bytes: the hash dvc.lock records for an output."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
