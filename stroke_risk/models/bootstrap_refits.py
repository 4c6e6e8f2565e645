"""Refits of a pipeline on seeded bootstrap resamples, and their predictions.

stroke_risk.evaluation.instability summarises them as prediction instability.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from stroke_risk.models.reproducible_fit import fit_reproducibly


def bootstrap_indices(n_rows: int, *, n_bootstrap: int, seed: int) -> np.ndarray:
    """(n_bootstrap, n_rows) row positions drawn with replacement, from one seeded stream
    (drawn up front, so the resamples do not depend on how refits are spread over jobs)."""
    return np.random.default_rng(seed).integers(0, n_rows, size=(n_bootstrap, n_rows))


def bootstrap_predictions(
    make_pipeline: Callable[[], Any],
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    n_bootstrap: int,
    seed: int,
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """(original predictions (n,), bootstrap predictions (B, n)) for every row of X.

    make_pipeline() returns a fresh, unfitted pipeline (same hyper-parameters and seed each
    time). The original model is fitted on all rows; model b on resample b. Results do not
    depend on n_jobs.
    """
    draws = bootstrap_indices(len(y), n_bootstrap=n_bootstrap, seed=seed)
    original = _fit_predict(make_pipeline(), X, y, np.arange(len(y)))
    refits = Parallel(n_jobs=n_jobs)(
        delayed(_fit_predict)(make_pipeline(), X, y, rows) for rows in draws
    )
    return original, np.vstack(refits)


def _fit_predict(pipeline: Any, X: pd.DataFrame, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    fitted = fit_reproducibly(pipeline, X.iloc[rows], y[rows])
    return np.asarray(fitted.predict_proba(X)[:, 1], dtype=float)
