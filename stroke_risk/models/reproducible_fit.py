"""Fitted parameters that do not depend on the machine's BLAS kernel or thread count.

A linear model's solver (L-BFGS in LogisticRegression) sums through BLAS, and which kernel
OpenBLAS picks (`OPENBLAS_CORETYPE`: Haswell, SkylakeX, Nehalem, ...) changes the order of
those sums, so the fitted coefficients of two honest machines differ in their last bits
(measured on the default model: up to ~1e-14 relative, tens of ulps) and so would the bytes
of every file written from them. Instead of pinning the kernel (which some machines need to
choose themselves), every fitted floating-point parameter of such a step is rounded to a
fixed binary grid of SIGNIFICANT_BITS mantissa bits right after fitting. Two fits that agree
to far better than the grid's spacing then give the same bits.

Equal bytes are very likely, not certain: a parameter whose exact value lies within the
kernel noise of a grid boundary can still round both ways. With 24 bits kept (relative spacing
2^-24, about 6e-8) and kernel noise below 1e-13 relative, the chance per parameter is below
2 * 1e-13 / 6e-8, about 3e-6; a pipeline run rounds a few hundred parameters (final model plus
the cross-validation fits behind the out-of-fold predictions), so below ~1e-3 per run
(`python -m benchmarks.blas_kernels` measures the noise and prints the margins). The change to
the model is far below anything a metric can see: a relative change of at most 3e-8 per
coefficient.

Only the families whose fit goes through BLAS are rounded (scikit-learn's linear models);
the tree families fit with their own summation code, whose result does not depend on the
BLAS kernel, and rounding their split thresholds could move a split across a training value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

# Mantissa bits kept (float32's precision): far coarser than kernel noise, far finer than
# any effect on a prediction.
SIGNIFICANT_BITS = 24

# Modules whose estimators fit through BLAS and so get their parameters rounded.
BLAS_FITTED_MODULES = ("sklearn.linear_model",)


def round_to_significant_bits(values: Any, bits: int = SIGNIFICANT_BITS) -> np.ndarray:
    """`values` rounded to `bits` mantissa bits (round half to even), as float64.

    Exact arithmetic only (frexp/ldexp scale by powers of two; the rounding acts on an
    integer-valued float below 2^bits), so every machine gives the same result. Zero, inf
    and nan pass through unchanged.
    """
    array = np.asarray(values, dtype=np.float64)
    mantissa, exponent = np.frexp(array)
    rounded = np.ldexp(np.round(np.ldexp(mantissa, bits)), exponent - bits)
    return np.where(np.isfinite(array), rounded, array)


def _fits_through_blas(estimator: Any) -> bool:
    return type(estimator).__module__.startswith(BLAS_FITTED_MODULES)


def _round_fitted_attributes(estimator: Any) -> None:
    """Round every public fitted float attribute (sklearn's trailing-underscore names)."""
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, np.ndarray) and value.dtype == np.float64:
            setattr(estimator, name, round_to_significant_bits(value))
        elif isinstance(value, float):
            setattr(estimator, name, float(round_to_significant_bits(value)))


def _fitted_steps(estimator: Any) -> list[Any]:
    """The estimator and every fitted estimator nested in it (pipelines, column transformers)."""
    if isinstance(estimator, Pipeline):
        return [inner for _, step in estimator.steps for inner in _fitted_steps(step)]
    if isinstance(estimator, ColumnTransformer):
        return [
            inner
            for _, transformer, _ in estimator.transformers_
            if not isinstance(transformer, str)
            for inner in _fitted_steps(transformer)
        ]
    return [estimator]


def canonicalize_fitted(estimator: Any) -> Any:
    """Round, in place, the fitted parameters of every BLAS-fitted step; returns `estimator`."""
    for step in _fitted_steps(estimator):
        if _fits_through_blas(step):
            _round_fitted_attributes(step)
    return estimator


def fit_reproducibly(estimator: Any, X: Any, y: Any) -> Any:
    """`estimator.fit(X, y)` whose fitted parameters are the same bits on every machine."""
    return canonicalize_fitted(estimator.fit(X, y))
