"""The data-only serving artifact: everything the service scores and explains with, no code.

The train stage writes ``models/serving_model.npz`` next to the pickled pipeline
(``models/model.joblib``, which the later stages and MLflow still load). It holds only
numbers and strings, read back with ``numpy.load(allow_pickle=False)``: a file that asks for
an object array is refused instead of unpickled, so no serving artifact can run code in the
process that reads it. What it holds is exactly what the service's fast path
(app/compiled.py) and the explainer (stroke_risk/models/explain.py) read from the fitted pipeline:

- the FeatureEngineer's config (stroke_risk.data.features.FeatureConfig);
- per ColumnTransformer part: the columns, the imputer statistics and scaler mean/scale
  (numeric parts) or the one-hot categories (categorical parts), and its output slice;
- the estimator's tables (stroke_risk.models.tree_tables): logistic coefficients, a random forest's
  flat node arrays, the step functions of an EBM or one-column-per-tree gradient boosting,
  or XGBoost's own UBJSON model (parsed by XGBoost's C++ loader, not by pickle) plus the
  iteration range predict_proba uses;
- a probe batch (every category, band edge and bound; ``probe_batch``) and the pipeline's
  ``predict_proba`` on it, so the service proves at start-up, without the pipeline, that
  what it loaded scores like the pipeline did (app/model.py).

The file is a zip of ``.npy`` arrays plus a JSON header (array ``header``), written with
fixed timestamps and in a fixed order, so the same pipeline always gives the same bytes
(its md5 goes into dvc.lock like any output). Errors are one line (ServingArtifactError).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stroke_risk.data.features import FeatureConfig
from stroke_risk.data.schema import (
    FEATURE_NAMES,
    FEATURES,
    BinaryField,
    CategoricalField,
    NumericField,
)
from stroke_risk.models.families import model_tables
from stroke_risk.models.tree_tables import (
    BoostedTrees,
    ForestTables,
    LogisticTables,
    ModelTables,
    step_functions_of_tables,
)

if TYPE_CHECKING:
    import pandas as pd


FORMAT = "stroke-risk-serving-model"
FORMAT_VERSION = 1
HEADER = "header"
# Zip entries get this timestamp, so identical content gives identical bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ServingArtifactError(ValueError):
    """The serving artifact cannot be read; str() is one line."""


class UnsupportedPipeline(ValueError):
    """The fitted pipeline has a step the serving artifact cannot express (one line)."""


@dataclass(frozen=True)
class ImputeStep:
    """SimpleImputer with NaN as missing: NaN in column j becomes statistics[j]."""

    statistics: np.ndarray


@dataclass(frozen=True)
class ScaleStep:
    """StandardScaler: X -= mean (when not None); X /= scale (when not None)."""

    mean: np.ndarray | None
    scale: np.ndarray | None


@dataclass(frozen=True)
class NumericPart:
    """Numeric/binary columns through imputer and scaler steps, written to X[:, start:stop]."""

    names: tuple[str, ...]
    steps: tuple[ImputeStep | ScaleStep, ...]
    out: tuple[int, int]


@dataclass(frozen=True)
class OneHotPart:
    """One-hot columns: categories[j] are column names[j]'s fitted categories, in output
    order; strict means an unknown value is an error (handle_unknown="error")."""

    names: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    strict: bool
    out: tuple[int, int]


Part = NumericPart | OneHotPart


@dataclass(frozen=True)
class ProbeBatch:
    """Raw records held column-wise (the layout of app.columns.FeatureColumns): numeric
    float64 (NaN missing), binary int64, categorical codes into the schema's categories."""

    numeric: dict[str, np.ndarray]
    binary: dict[str, np.ndarray]
    categorical: dict[str, np.ndarray]
    n_rows: int

    def to_frame(self) -> pd.DataFrame:
        """Return the records as the DataFrame load_dataset gives (the pipeline's input)."""
        import pandas as pd

        data: dict[str, Any] = {}
        for spec in FEATURES:
            if isinstance(spec, CategoricalField):
                labels = np.asarray(spec.categories, dtype=object)
                data[spec.name] = labels[self.categorical[spec.name]]
            elif isinstance(spec, BinaryField):
                data[spec.name] = self.binary[spec.name]
            else:
                data[spec.name] = self.numeric[spec.name]
        return pd.DataFrame(data, columns=list(FEATURE_NAMES))


@dataclass(frozen=True)
class ServingModel:
    """What the service scores and explains with, as data (see the module docstring)."""

    pipeline_md5: str
    feature_config: FeatureConfig | None
    parts: tuple[Part, ...]
    width: int
    tables: ModelTables
    probe: ProbeBatch
    probe_probability: np.ndarray

    @property
    def sources(self) -> list[str]:
        """The raw field of every design-matrix column (what explanations sum over)."""
        from stroke_risk.models.explain import source_field

        sources: list[str] = []
        for part in self.parts:
            if isinstance(part, NumericPart):
                sources += [source_field(name) for name in part.names]
            else:
                for name, categories in zip(part.names, part.categories, strict=True):
                    sources += [source_field(name)] * len(categories)
        return sources


def probe_batch(config: FeatureConfig | None, n_random: int = 400) -> ProbeBatch:
    """Return a deterministic probe batch covering every category, band edge and bound.

    Rows cycle through each field's special values (bounds, band edges, missing bmi) and
    the rest are seeded random draws over the schema's full domain.
    """
    rng = np.random.default_rng(20240611)
    specials: dict[str, list[float]] = {}
    for spec in FEATURES:
        if isinstance(spec, NumericField):
            values = [spec.minimum, spec.maximum, (spec.minimum + spec.maximum) / 2]
            if config is not None:
                values += [float(v) for v in config.age_band_edges]
                values += [float(v) for v in config.bmi_category_edges]
                values.append(float(config.high_glucose_cut))
            values = [v for v in values if spec.minimum <= v <= spec.maximum]
            specials[spec.name] = values + ([math.nan] if spec.nullable else [])
    n_special = max(len(values) for values in specials.values())
    n_rows = n_special + n_random
    numeric: dict[str, np.ndarray] = {}
    binary: dict[str, np.ndarray] = {}
    categorical: dict[str, np.ndarray] = {}
    for spec in FEATURES:
        if isinstance(spec, NumericField):
            drawn = rng.uniform(spec.minimum, spec.maximum, n_rows)
            special = specials[spec.name]
            drawn[:n_special] = [special[i % len(special)] for i in range(n_special)]
            if spec.nullable:
                drawn[n_special:][rng.random(n_random) < 0.1] = np.nan
            numeric[spec.name] = drawn
        elif isinstance(spec, BinaryField):
            binary[spec.name] = rng.integers(0, 2, n_rows).astype(np.int64)
        else:
            assert isinstance(spec, CategoricalField)
            count = len(spec.categories)
            codes = rng.integers(0, count, n_rows)
            codes[:count] = np.arange(count)
            categorical[spec.name] = codes.astype(np.intp)
    return ProbeBatch(numeric, binary, categorical, n_rows)


# --- writer: read the fitted pipeline -------------------------------------------------


def _numeric_steps(transformer: Any) -> tuple[ImputeStep | ScaleStep, ...]:
    """Return the steps of a passthrough, imputer, scaler or Pipeline of them."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    if isinstance(transformer, str) and transformer == "passthrough":
        return ()
    if type(transformer) is FunctionTransformer and transformer.func is None:
        return ()  # what ColumnTransformer stores for "passthrough" once fitted
    if isinstance(transformer, Pipeline):
        return tuple(step for _, inner in transformer.steps for step in _numeric_steps(inner))
    if type(transformer) is SimpleImputer:
        missing = transformer.missing_values
        if not (isinstance(missing, float) and math.isnan(missing)):
            raise UnsupportedPipeline("imputer with missing_values other than NaN")
        if getattr(transformer, "add_indicator", False):
            raise UnsupportedPipeline("imputer with add_indicator")
        statistics = np.asarray(transformer.statistics_, dtype=np.float64)
        if not np.isfinite(statistics).all():
            raise UnsupportedPipeline("imputer that drops all-missing columns")
        return (ImputeStep(statistics),)
    if type(transformer) is StandardScaler:
        mean = np.asarray(transformer.mean_, dtype=np.float64) if transformer.with_mean else None
        scale = np.asarray(transformer.scale_, dtype=np.float64) if transformer.with_std else None
        return (ScaleStep(mean, scale),)
    raise UnsupportedPipeline(f"column transformer step {type(transformer).__name__}")


def _one_hot_part(encoder: Any, names: tuple[str, ...], out: slice) -> OneHotPart:
    if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False):
        raise UnsupportedPipeline("one-hot encoder with drop or infrequent categories")
    if getattr(encoder, "sparse_output", False) or np.dtype(encoder.dtype) != np.float64:
        raise UnsupportedPipeline("one-hot encoder with sparse or non-float64 output")
    categories = tuple(tuple(str(value) for value in fitted) for fitted in encoder.categories_)
    if sum(len(c) for c in categories) != out.stop - out.start:
        raise UnsupportedPipeline("one-hot width does not match the column transformer")
    return OneHotPart(names, categories, encoder.handle_unknown == "error", (out.start, out.stop))


def _preprocessor_parts(transformer: Any) -> tuple[tuple[Part, ...], int]:
    """Return the parts of a fitted ColumnTransformer and its output width."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    if type(transformer) is not ColumnTransformer:
        raise UnsupportedPipeline(f"preprocessing step {type(transformer).__name__}")
    indices = transformer.output_indices_
    parts: list[Part] = []
    width = 0
    for name, fitted, columns in transformer.transformers_:
        out = indices[name]
        width = max(width, out.stop)
        if out.stop == out.start or (isinstance(fitted, str) and fitted == "drop"):
            continue
        if not all(isinstance(column, str) for column in columns):
            raise UnsupportedPipeline("columns selected by position or mask")
        names = tuple(columns)
        if type(fitted) is OneHotEncoder:
            parts.append(_one_hot_part(fitted, names, out))
            continue
        if len(names) != out.stop - out.start:
            raise UnsupportedPipeline(f"transformer {name!r} changes the column count")
        parts.append(NumericPart(names, _numeric_steps(fitted), (out.start, out.stop)))
    return tuple(parts), width


def export_pipeline(pipeline: Any, pipeline_md5: str = "") -> ServingModel:
    """Return the serving model of a fitted serving pipeline ([FeatureEngineer,]
    ColumnTransformer, classifier of a family of stroke_risk.models.families;
    docs/CONTRACTS.md), with the
    pipeline's own probabilities on the probe batch. Raises UnsupportedPipeline (one line)
    for anything it cannot express as data."""
    from sklearn.pipeline import Pipeline

    from stroke_risk.data.features import FeatureEngineer

    if not isinstance(pipeline, Pipeline):
        raise UnsupportedPipeline(f"artifact is a {type(pipeline).__name__}, not a Pipeline")
    steps = [step for _, step in pipeline.steps if not (isinstance(step, str) or step is None)]
    config: FeatureConfig | None = None
    if len(steps) == 3:
        if type(steps[0]) is not FeatureEngineer:
            raise UnsupportedPipeline(f"feature step {type(steps[0]).__name__}")
        config = steps[0].config or FeatureConfig()
        steps = steps[1:]
    elif len(steps) != 2:
        raise UnsupportedPipeline(f"pipeline with {len(steps)} steps")
    parts, width = _preprocessor_parts(steps[0])
    estimator = steps[1]
    expected = getattr(estimator, "n_features_in_", width)
    if expected != width:
        raise UnsupportedPipeline(f"estimator expects {expected} features, matrix has {width}")
    if [int(c) for c in np.asarray(getattr(estimator, "classes_", []))] != [0, 1]:
        raise UnsupportedPipeline("classifier whose classes are not [0, 1]")
    try:
        tables = model_tables(estimator)
    except (TypeError, ValueError) as reason:
        raise UnsupportedPipeline(str(reason)) from None
    probe = probe_batch(config)
    probability = np.asarray(pipeline.predict_proba(probe.to_frame())[:, 1], dtype=np.float64)
    # Rounded to 1e-10 (the start-up check allows 1e-9): the pipeline's matrix product runs
    # through BLAS, whose kernel would otherwise change the last bits, and so the artifact's
    # bytes, from machine to machine (benchmarks/blas_kernels.py).
    probability = np.round(probability, 10)
    return ServingModel(pipeline_md5, config, parts, width, tables, probe, probability)


# --- bytes ----------------------------------------------------------------------------


def _tables_to_data(tables: ModelTables, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Put the estimator's arrays into arrays; return its header entry."""
    if isinstance(tables, LogisticTables):
        arrays.update({"model.coef": tables.coef, "model.intercept": tables.intercept})
        return {"kind": "logistic"}
    if isinstance(tables, BoostedTrees):
        raw = bytes(tables.booster.save_raw("ubj"))
        arrays["model.xgboost_ubj"] = np.frombuffer(raw, dtype=np.uint8)
        return {"kind": "xgboost", "iteration_range": list(tables.iteration_range)}
    if isinstance(tables, ForestTables):
        for name in ("roots", "feature", "threshold", "missing_left", "left", "right", "rate"):
            arrays[f"model.{name}"] = getattr(tables, name)
        return {"kind": "forest", "depth": tables.depth}
    arrays.update(
        {
            "model.columns": tables.columns,
            "model.threshold_counts": np.asarray([len(t) for t in tables.thresholds]),
            "model.thresholds": tables.flat_thresholds,
            "model.values": tables.flat_values,
            "model.missing": tables.missing,
            "model.centres": tables.centres,
        }
    )
    return {"kind": "steps", "constant": tables.constant, "n_columns": tables.n_columns}


def serving_model_bytes(model: ServingModel) -> bytes:
    """Return the artifact file's bytes (deterministic for a given model)."""
    arrays: dict[str, np.ndarray] = {}
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(model.parts):
        if isinstance(part, OneHotPart):
            parts.append(
                {
                    "kind": "one_hot",
                    "names": list(part.names),
                    "categories": [list(c) for c in part.categories],
                    "strict": part.strict,
                    "out": list(part.out),
                }
            )
            continue
        steps: list[dict[str, Any]] = []
        for position, step in enumerate(part.steps):
            key = f"parts.{index}.{position}"
            if isinstance(step, ImputeStep):
                arrays[f"{key}.statistics"] = step.statistics
                steps.append({"kind": "impute"})
            else:
                for name in ("mean", "scale"):
                    value = getattr(step, name)
                    if value is not None:
                        arrays[f"{key}.{name}"] = value
                steps.append(
                    {
                        "kind": "scale",
                        "mean": step.mean is not None,
                        "scale": step.scale is not None,
                    }
                )
        parts.append(
            {"kind": "numeric", "names": list(part.names), "steps": steps, "out": list(part.out)}
        )
    for group in ("numeric", "binary", "categorical"):
        for name, values in getattr(model.probe, group).items():
            arrays[f"probe.{group}.{name}"] = values
    arrays["probe.probability"] = model.probe_probability
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "pipeline_md5": model.pipeline_md5,
        "feature_config": None if model.feature_config is None else asdict(model.feature_config),
        "parts": parts,
        "width": model.width,
        "model": _tables_to_data(model.tables, arrays),
        "probe_rows": model.probe.n_rows,
    }
    arrays[HEADER] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), entry.getvalue())
    return buffer.getvalue()


def write_serving_model(path: str | Path, pipeline: Any, pipeline_md5: str) -> ServingModel:
    """Export the pipeline and write its artifact to path atomically; return the model."""
    from stroke_risk.io import atomic_path

    model = export_pipeline(pipeline, pipeline_md5)
    data = serving_model_bytes(model)
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return model


# --- reader: data only ----------------------------------------------------------------


class _Arrays:
    """The artifact's arrays with one-line errors for a missing or malformed one."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.arrays = arrays

    def get(self, name: str, kind: str, ndim: int = 1) -> np.ndarray:
        if name not in self.arrays:
            raise ServingArtifactError(f"serving artifact has no array {name!r}")
        value = self.arrays[name]
        if value.dtype.kind not in kind or value.ndim != ndim:
            raise ServingArtifactError(
                f"serving artifact array {name!r} is {value.dtype}/{value.ndim}-d, "
                f"expected kind {kind!r}/{ndim}-d"
            )
        return value

    def indices(self, name: str, size: int) -> np.ndarray:
        value = self.get(name, "iu").astype(np.intp)
        if len(value) and (value.min() < 0 or value.max() >= size):
            raise ServingArtifactError(f"serving artifact array {name!r} indexes out of range")
        return value


def _load_arrays(data: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        # allow_pickle=False turns an object (pickled) array into a ValueError: refused.
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ServingArtifactError(f"not a serving artifact ({message})") from None


def _tables_from_data(header: Mapping[str, Any], arrays: _Arrays, width: int) -> ModelTables:
    kind = header.get("kind")
    if kind == "logistic":
        coef = arrays.get("model.coef", "f", ndim=2)
        if coef.shape != (1, width):
            raise ServingArtifactError(f"logistic coefficients of shape {coef.shape}")
        return LogisticTables(coef, arrays.get("model.intercept", "f"))
    if kind == "xgboost":
        import xgboost

        from stroke_risk.models.tree_tables import boosted_trees_of_booster

        raw = arrays.get("model.xgboost_ubj", "u").tobytes()
        booster = xgboost.Booster()
        try:
            booster.load_model(bytearray(raw))  # XGBoost's own UBJSON parser
            begin, end = (int(v) for v in header["iteration_range"])
            trees = boosted_trees_of_booster(booster, (begin, end))
        except (xgboost.core.XGBoostError, ValueError, KeyError, TypeError) as error:
            raise ServingArtifactError(f"unusable XGBoost model ({error})") from None
        if int(booster.num_features()) != width:
            raise ServingArtifactError("XGBoost model width does not match the design matrix")
        return trees
    if kind == "forest":
        rate = arrays.get("model.rate", "f")
        n_nodes = len(rate)
        tables = ForestTables(
            roots=arrays.indices("model.roots", n_nodes),
            feature=arrays.indices("model.feature", max(width, 1)),
            threshold=arrays.get("model.threshold", "f").astype(np.float64),
            missing_left=arrays.get("model.missing_left", "b"),
            left=arrays.indices("model.left", n_nodes),
            right=arrays.indices("model.right", n_nodes),
            rate=rate.astype(np.float64),
            depth=int(header["depth"]),
        )
        if len({len(tables.feature), len(tables.threshold), len(tables.left), n_nodes}) != 1:
            raise ServingArtifactError("forest node arrays of different lengths")
        return tables
    if kind == "steps":
        counts = arrays.get("model.threshold_counts", "iu")
        flat_thresholds = arrays.get("model.thresholds", "f")
        flat_values = arrays.get("model.values", "f")
        if counts.sum() != len(flat_thresholds) or len(flat_values) != counts.sum() + len(counts):
            raise ServingArtifactError("step function tables of inconsistent sizes")
        bounds = np.cumsum(counts)[:-1]
        value_bounds = np.cumsum(counts + 1)[:-1]
        return step_functions_of_tables(
            constant=float(header["constant"]),
            n_columns=int(header["n_columns"]),
            columns=arrays.indices("model.columns", width),
            thresholds=tuple(np.split(flat_thresholds, bounds)) if len(counts) else (),
            values=tuple(np.split(flat_values, value_bounds)) if len(counts) else (),
            missing=arrays.get("model.missing", "f"),
            centres=arrays.get("model.centres", "f"),
        )
    raise ServingArtifactError(f"unknown model kind {kind!r}")


def _part_from_data(index: int, entry: Mapping[str, Any], arrays: _Arrays) -> Part:
    names = tuple(str(name) for name in entry["names"])
    out = (int(entry["out"][0]), int(entry["out"][1]))
    if entry["kind"] == "one_hot":
        categories = tuple(tuple(str(c) for c in column) for column in entry["categories"])
        return OneHotPart(names, categories, bool(entry["strict"]), out)
    steps: list[ImputeStep | ScaleStep] = []
    for position, step in enumerate(entry["steps"]):
        key = f"parts.{index}.{position}"
        if step["kind"] == "impute":
            steps.append(ImputeStep(arrays.get(f"{key}.statistics", "f")))
        else:
            mean = arrays.get(f"{key}.mean", "f") if step["mean"] else None
            scale = arrays.get(f"{key}.scale", "f") if step["scale"] else None
            steps.append(ScaleStep(mean, scale))
    return NumericPart(names, tuple(steps), out)


def read_serving_model(data: bytes) -> ServingModel:
    """Return the serving model held in an artifact's bytes; never unpickles anything.

    Raises ServingArtifactError (one line) for anything but a well-formed artifact.
    """
    loaded = _load_arrays(data)
    arrays = _Arrays(loaded)
    try:
        header = json.loads(arrays.get(HEADER, "u").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ServingArtifactError(f"serving artifact header is unreadable ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ServingArtifactError("not a serving artifact (no stroke-risk header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise ServingArtifactError(
            f"serving artifact format {header.get('format_version')!r}, this code reads "
            f"{FORMAT_VERSION}"
        )
    try:
        width = int(header["width"])
        config = header["feature_config"]
        feature_config = (
            None
            if config is None
            else FeatureConfig(
                age_band_edges=tuple(float(v) for v in config["age_band_edges"]),
                bmi_category_edges=tuple(float(v) for v in config["bmi_category_edges"]),
                high_glucose_cut=float(config["high_glucose_cut"]),
            )
        )
        parts = tuple(
            _part_from_data(index, entry, arrays) for index, entry in enumerate(header["parts"])
        )
        tables = _tables_from_data(header["model"], arrays, width)
        n_rows = int(header["probe_rows"])
        probe = ProbeBatch(
            numeric={
                spec.name: arrays.get(f"probe.numeric.{spec.name}", "f")
                for spec in FEATURES
                if isinstance(spec, NumericField)
            },
            binary={
                spec.name: arrays.get(f"probe.binary.{spec.name}", "iu").astype(np.int64)
                for spec in FEATURES
                if isinstance(spec, BinaryField)
            },
            categorical={
                spec.name: arrays.indices(f"probe.categorical.{spec.name}", len(spec.categories))
                for spec in FEATURES
                if isinstance(spec, CategoricalField)
            },
            n_rows=n_rows,
        )
        probability = arrays.get("probe.probability", "f")
    except (KeyError, TypeError, IndexError) as error:
        raise ServingArtifactError(f"serving artifact header lacks {error}") from None
    sizes = [
        len(v) for group in (probe.numeric, probe.binary, probe.categorical) for v in group.values()
    ]
    if any(size != n_rows for size in sizes) or len(probability) != n_rows:
        raise ServingArtifactError("serving artifact probe arrays of different lengths")
    return ServingModel(
        pipeline_md5=str(header.get("pipeline_md5", "")),
        feature_config=feature_config,
        parts=parts,
        width=width,
        tables=tables,
        probe=probe,
        probe_probability=probability,
    )
