"""Fitted parameters rounded to a fixed grid: BLAS-kernel noise cannot reach the written bytes.

The machines' kernels are not switched here (tests leave OPENBLAS_* as they find them):
instead the noise a different kernel would add is planted directly, one ulp on every fitted
parameter, and the bytes the train stage would write are compared.
"""

from __future__ import annotations

import copy
import io

import joblib
import numpy as np
import pytest

from stroke_risk.data.features import FeatureConfig
from stroke_risk.models.pipelines import build_model_pipeline
from stroke_risk.models.reproducible_fit import (
    SIGNIFICANT_BITS,
    canonicalize_fitted,
    fit_reproducibly,
    round_to_significant_bits,
)


def written_bytes(model) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def nudge_linear_parameters(model, direction: float) -> int:
    """Move every nonzero float of the model's coef_/intercept_ one ulp towards `direction`.

    Exact zeros are left: they belong to one-hot columns that are all zero in training, whose
    gradient is exactly zero on every kernel, so no kernel's noise can move them.
    """
    estimator = model.steps[-1][1]
    moved = 0
    for name in ("coef_", "intercept_"):
        value = getattr(estimator, name)
        setattr(estimator, name, np.where(value != 0, np.nextafter(value, direction), value))
        moved += int(np.count_nonzero(value))
    return moved


@pytest.fixture(scope="module")
def raw_logreg(featurized):
    frame, y = featurized
    pipeline = build_model_pipeline(
        "logreg", {"C": 0.12, "feature_set": "full"}, feature_config=FeatureConfig(), seed=0
    )
    return pipeline.fit(frame, y)


@pytest.mark.parametrize("direction", [np.inf, -np.inf])
def test_one_ulp_on_every_parameter_leaves_the_written_model_unchanged(raw_logreg, direction):
    nudged = copy.deepcopy(raw_logreg)
    moved = nudge_linear_parameters(nudged, direction)
    assert moved > 10
    # Without the rounding the planted noise reaches the bytes (the guard can fail) ...
    assert written_bytes(nudged) != written_bytes(raw_logreg)
    # ... with it, both fits write the same model.
    expected = written_bytes(canonicalize_fitted(copy.deepcopy(raw_logreg)))
    assert written_bytes(canonicalize_fitted(nudged)) == expected


def test_rounded_model_predicts_as_the_exact_fit(raw_logreg, featurized):
    frame, _ = featurized
    rounded = canonicalize_fitted(copy.deepcopy(raw_logreg))
    exact = raw_logreg.predict_proba(frame)[:, 1]
    np.testing.assert_allclose(rounded.predict_proba(frame)[:, 1], exact, rtol=1e-6)


def test_fit_reproducibly_rounds_the_linear_step_only(featurized):
    frame, y = featurized
    pipeline = build_model_pipeline(
        "logreg", {"C": 1.0, "feature_set": "compact"}, feature_config=FeatureConfig(), seed=0
    )
    fitted = fit_reproducibly(pipeline, frame, y)
    coefficients = fitted.steps[-1][1].coef_
    np.testing.assert_array_equal(round_to_significant_bits(coefficients), coefficients)
    scaler = fitted.named_steps["preprocess"].named_transformers_["numeric"].named_steps["scale"]
    assert not np.array_equal(round_to_significant_bits(scaler.mean_), scaler.mean_)


def test_tree_families_are_left_as_fitted(featurized):
    frame, y = featurized
    pipeline = build_model_pipeline(
        "random_forest",
        {"n_estimators": 5, "max_depth": 3, "feature_set": "compact"},
        feature_config=FeatureConfig(),
        seed=0,
    ).fit(frame, y)
    before = written_bytes(pipeline)
    assert written_bytes(canonicalize_fitted(pipeline)) == before


def test_rounding_keeps_the_stated_bits_exactly():
    grid = 2.0**-SIGNIFICANT_BITS  # half the spacing of the grid in [1, 2)
    values = np.array([1.0, 1.0 + 2 * grid, -3.5, 0.0, 1e-300, 123456.789])
    rounded = round_to_significant_bits(values)
    # Values already on the grid stay, and rounding is idempotent.
    np.testing.assert_array_equal(rounded[:4], values[:4])
    np.testing.assert_array_equal(round_to_significant_bits(rounded), rounded)
    # The error is at most half a grid step of the value's binade.
    assert np.all(np.abs(rounded - values) <= np.abs(values) * grid)
    # Halfway between two grid points rounds to the even one.
    assert round_to_significant_bits(1.0 + grid) == 1.0
    assert round_to_significant_bits(1.0 + 3 * grid) == 1.0 + 4 * grid
    special = round_to_significant_bits(np.array([np.inf, -np.inf, np.nan]))
    assert np.isinf(special[0]) and np.isinf(special[1]) and np.isnan(special[2])
