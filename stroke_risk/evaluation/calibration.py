"""Calibration in the standard clinical terms: intercept, slope and a smoothed curve.

- Calibration intercept (calibration-in-the-large): alpha in logit P(y=1) = alpha + lp, with
  the model's log-odds lp as an offset. 0 is perfect; > 0 means the model under-predicts.
- Calibration slope: beta in logit P(y=1) = a + beta * lp. 1 is perfect; < 1 means the
  predictions are too extreme (typical of overfitting), > 1 too modest.
- Smoothed calibration curve: a logistic regression of the outcome on a restricted cubic
  spline of lp (Harrell's knots), so no binning choice shapes the picture.

Intercept and slope get profile-likelihood intervals. The smoothed curve's band is a
bootstrap: every fit takes bootstrap weights (stroke_risk.evaluation.metrics.resample_weights) and
solves all resamples together by batched Newton steps, so 1,000 resamples cost milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import chi2

from stroke_risk.evaluation.metrics import percentile_interval, resample_weights
from stroke_risk.log_odds import logit

# Probabilities are clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] before their logit, so a model
# that outputs exactly 0 or 1 still has a finite linear predictor.
LOGIT_CLIP = 1e-6


def fit_logistic(
    design: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    *,
    offset: np.ndarray | None = None,
    start: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-8,
) -> np.ndarray:
    """Maximum-likelihood logistic coefficients, one row per row of weights.

    design is (n, k) (include a column of ones for an intercept), weights (B, n) case
    weights (bootstrap counts, or ones for the plain fit). Returns (B, k); rows whose
    Newton iteration fails to converge (e.g. a resample without an outcome) are NaN.
    """
    X = np.asarray(design, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    y = np.asarray(y, dtype=float)
    n, k = X.shape
    offset = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
    beta = (
        np.zeros((len(w), k)) if start is None else np.tile(np.asarray(start, float), (len(w), 1))
    )
    outer = (X[:, :, None] * X[:, None, :]).reshape(n, k * k)

    def log_likelihood(coefficients: np.ndarray, rows: np.ndarray) -> np.ndarray:
        eta = coefficients @ X.T + offset
        return np.sum(w[rows] * (y * eta - np.logaddexp(0.0, eta)), axis=1)

    converged = np.zeros(len(w), dtype=bool)
    active = np.arange(len(w))  # rows still iterating: converged rows cost nothing more
    for _ in range(max_iter):
        rows = w[active]
        mu = expit(beta[active] @ X.T + offset)
        gradient = (rows * (y - mu)) @ X
        hessian = ((rows * mu * (1 - mu)) @ outer).reshape(len(active), k, k)
        with np.errstate(invalid="ignore", over="ignore"):
            try:
                step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                step = np.stack([_safe_solve(h, g) for h, g in zip(hessian, gradient, strict=True)])
        step[~np.isfinite(step).all(axis=1)] = 0.0
        size = np.abs(step).max(axis=1)
        # Step halving for large steps: a full Newton step from a poor start can overshoot
        # and cycle; the log-likelihood is concave, so halving until it does not fall
        # always succeeds. Small steps (near the optimum) are safe and skip the check.
        risky = np.nonzero(size > 0.5)[0]
        if len(risky):
            index = active[risky]
            current = log_likelihood(beta[index], index)
            scale = np.ones(len(risky))
            for _ in range(40):
                proposed = log_likelihood(beta[index] + scale[:, None] * step[risky], index)
                worse = proposed < current - 1e-12 * np.abs(current)
                if not worse.any():
                    break
                scale[worse] /= 2
            step[risky] *= scale[:, None]
            size[risky] *= scale
        beta[active] += step
        done = size < tol
        converged[active[done]] = True
        active = active[~done]
        if len(active) == 0:
            break
    beta[~converged] = np.nan
    return beta


def _safe_solve(hessian: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(hessian, gradient)
    except np.linalg.LinAlgError:
        return np.full_like(gradient, np.nan)


def intercept_and_slope(
    y_true: np.ndarray,
    probability: np.ndarray,
    weights: np.ndarray,
    *,
    start_intercept: np.ndarray | None = None,
    start_slope: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(calibration intercept, calibration slope), one value per row of weights.

    start_* are Newton starting points (the full-sample fit makes bootstrap fits converge
    in a few steps); they do not change the result."""
    lp = logit(probability, floor=LOGIT_CLIP)
    ones = np.ones((len(lp), 1))
    intercept = fit_logistic(ones, y_true, weights, offset=lp, start=start_intercept)[:, 0]
    slope = fit_logistic(np.c_[ones, lp], y_true, weights, start=start_slope)[:, 1]
    return intercept, slope


def logistic_log_likelihood(y_true: np.ndarray, eta: np.ndarray) -> float:
    """Bernoulli log-likelihood of outcomes y_true at linear predictors (log-odds) eta."""
    return float(np.sum(y_true * eta - np.logaddexp(0.0, eta)))


def profile_interval(
    profile_log_likelihood: Callable[[float], float],
    estimate: float,
    *,
    level: float = 0.95,
    initial_step: float = 0.1,
    max_steps: int = 60,
) -> tuple[float | None, float | None]:
    """Profile-likelihood interval of one parameter: every value whose likelihood-ratio
    statistic 2 (l(estimate) - l_p(value)) stays below the chi-squared(1) quantile.

    profile_log_likelihood(value) is the log-likelihood maximised over the other
    parameters with this one held at value; estimate is the maximum-likelihood value.
    Each bound is bracketed by doubling steps away from the estimate, then found by Brent's
    method; a side the statistic never crosses (e.g. under separation) is None.
    """
    critical = float(chi2.ppf(level, df=1))
    top = profile_log_likelihood(estimate)

    def excess(value: float) -> float:
        return 2.0 * (top - profile_log_likelihood(value)) - critical

    bounds: list[float | None] = []
    for direction in (-1.0, 1.0):
        inner, step = estimate, initial_step
        bound: float | None = None
        for _ in range(max_steps):
            outer = estimate + direction * step
            value = excess(outer)
            if not np.isfinite(value):
                break
            if value > 0:
                bound = float(brentq(excess, min(inner, outer), max(inner, outer), xtol=1e-10))
                break
            inner, step = outer, 2 * step
        bounds.append(bound)
    return bounds[0], bounds[1]


def calibration_intercept_slope(
    y_true: np.ndarray, probability: np.ndarray, *, level: float = 0.95
) -> dict[str, dict[str, float | None]]:
    """{"calibration_intercept": {value, ci_low, ci_high}, "calibration_slope": {...}}.

    Intervals are profile-likelihood intervals of the two logistic recalibration models:
    the intercept with the log-odds as offset (one parameter, so its profile is the
    likelihood itself), the slope profiled over a free intercept. A percentile bootstrap
    gives intervals that are too narrow for a slope estimated from few events; the profile
    likelihood keeps the likelihood's asymmetry that a Wald interval throws away.
    """
    y = np.asarray(y_true, dtype=float)
    lp = logit(probability, floor=LOGIT_CLIP)
    ones = np.ones((len(lp), 1))
    full = np.ones(len(lp))
    intercept = float(fit_logistic(ones, y, full, offset=lp)[0, 0])
    slope_fit = fit_logistic(np.c_[ones, lp], y, full, start=np.array([0.0, 1.0]))[0]
    slope = float(slope_fit[1])

    def intercept_profile(value: float) -> float:
        return logistic_log_likelihood(y, value + lp)

    def slope_profile(value: float) -> float:
        # The best intercept given this slope: a one-parameter fit with offset value * lp.
        free = fit_logistic(ones, y, full, offset=value * lp, start=slope_fit[:1])[0, 0]
        return logistic_log_likelihood(y, free + value * lp)

    result: dict[str, dict[str, float | None]] = {}
    for name, estimate, profile in (
        ("calibration_intercept", intercept, intercept_profile),
        ("calibration_slope", slope, slope_profile),
    ):
        if not np.isfinite(estimate):
            result[name] = {"value": None, "ci_low": None, "ci_high": None}
            continue
        low, high = profile_interval(profile, estimate, level=level)
        result[name] = {"value": estimate, "ci_low": low, "ci_high": high}
    return result


CALIBRATION_CI_METHOD = "profile likelihood, 95% (likelihood-ratio chi-squared(1) cut-off)"


def spline_knots(values: np.ndarray, n_knots: int = 3) -> np.ndarray:
    """Harrell's default knot positions (quantiles) for a restricted cubic spline."""
    quantiles = {
        3: (0.10, 0.50, 0.90),
        4: (0.05, 0.35, 0.65, 0.95),
        5: (0.05, 0.275, 0.5, 0.725, 0.95),
    }
    if n_knots not in quantiles:
        raise ValueError(f"n_knots must be 3, 4 or 5, got {n_knots}")
    return np.quantile(values, quantiles[n_knots])


def restricted_cubic_spline(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Harrell's restricted cubic spline basis: columns x, then n_knots - 2 nonlinear
    terms, linear beyond the outer knots."""
    x = np.asarray(x, dtype=float)
    t = np.asarray(knots, dtype=float)
    k = len(t)
    scale = (t[-1] - t[0]) ** 2

    def cube(values: np.ndarray) -> np.ndarray:
        return np.maximum(values, 0.0) ** 3

    columns = [x]
    for j in range(k - 2):
        term = (
            cube(x - t[j])
            - cube(x - t[k - 2]) * (t[k - 1] - t[j]) / (t[k - 1] - t[k - 2])
            + cube(x - t[k - 1]) * (t[k - 2] - t[j]) / (t[k - 1] - t[k - 2])
        )
        columns.append(term / scale)
    return np.column_stack(columns)


def smoothed_calibration_curve(
    y_true: np.ndarray,
    probability: np.ndarray,
    *,
    n_resamples: int,
    seed: int,
    grid_size: int = 40,
    n_knots: int = 3,
    chunk: int = 250,
) -> pd.DataFrame:
    """Observed risk as a smooth function of predicted risk, with a 95 % bootstrap band.

    Columns: predicted (a grid from the 1st to the 99th percentile of the predictions),
    observed, ci_low, ci_high. Knots are fixed from the full sample, so every resample fits
    the same basis.
    """
    lp = logit(probability, floor=LOGIT_CLIP)
    knots = spline_knots(lp, n_knots)
    design = np.c_[np.ones(len(lp)), restricted_cubic_spline(lp, knots)]
    low, high = np.quantile(probability, [0.01, 0.99])
    grid = np.linspace(low, high, grid_size)
    grid_design = np.c_[
        np.ones(grid_size), restricted_cubic_spline(logit(grid, floor=LOGIT_CLIP), knots)
    ]
    point = fit_logistic(design, y_true, np.ones(len(lp)))
    weights = resample_weights(len(lp), n_resamples=n_resamples, seed=seed)
    curves = np.concatenate(
        [
            expit(
                fit_logistic(design, y_true, weights[s : s + chunk], start=point[0]) @ grid_design.T
            )
            for s in range(0, n_resamples, chunk)
        ]
    )
    band = [percentile_interval(curves[:, index]) for index in range(grid_size)]
    return pd.DataFrame(
        {
            "predicted": grid,
            "observed": expit(point @ grid_design.T)[0],
            "ci_low": [entry[0] for entry in band],
            "ci_high": [entry[1] for entry in band],
        }
    )
