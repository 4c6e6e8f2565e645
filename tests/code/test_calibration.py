"""Calibration intercept, slope and smoothed curve against statsmodels' logistic GLM."""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.special import expit

from stroke_risk.evaluation.calibration import (
    LOGIT_CLIP,
    calibration_intercept_slope,
    fit_logistic,
    intercept_and_slope,
    restricted_cubic_spline,
    smoothed_calibration_curve,
    spline_knots,
)
from stroke_risk.evaluation.metrics import resample_weights
from stroke_risk.log_odds import logit


def simulated(distortion: float, shift: float, seed: int = 0, n: int = 3000):
    """Outcomes from true risks; predictions whose log-odds are (true - shift) / distortion."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-3.0, 1.2, n)
    y = (rng.random(n) < expit(true_logit)).astype(int)
    predicted = expit((true_logit - shift) / distortion)
    return y, predicted


def binomial_glm(y, design, offset=None):
    return sm.GLM(y, design, family=sm.families.Binomial(), offset=offset).fit().params


@pytest.mark.parametrize("distortion, shift", [(1.0, 0.0), (2.0, 0.0), (0.7, 0.5)])
def test_intercept_and_slope_match_statsmodels(distortion, shift):
    y, p = simulated(distortion, shift)
    intercept, slope = intercept_and_slope(y, p, np.ones(len(y)))
    lp = logit(p, floor=LOGIT_CLIP)
    expected_intercept = binomial_glm(y, np.ones((len(y), 1)), offset=lp)[0]
    expected_slope = binomial_glm(y, sm.add_constant(lp))[1]
    assert intercept[0] == pytest.approx(expected_intercept, abs=1e-7)
    assert slope[0] == pytest.approx(expected_slope, abs=1e-7)


def test_slope_recovers_a_known_distortion():
    """Predictions twice as extreme as the truth have slope ~0.5; a shift shows in the intercept."""
    y, p = simulated(distortion=0.5, shift=0.0, n=20_000)
    result = calibration_intercept_slope(y, p)
    assert result["calibration_slope"]["value"] == pytest.approx(0.5, abs=0.05)
    assert result["calibration_slope"]["ci_high"] < 1
    y, p = simulated(distortion=1.0, shift=0.7, n=20_000)
    result = calibration_intercept_slope(y, p)
    assert result["calibration_intercept"]["value"] == pytest.approx(0.7, abs=0.08)
    assert result["calibration_slope"]["ci_low"] < 1 < result["calibration_slope"]["ci_high"]


def test_bootstrap_fits_equal_fits_on_the_resampled_rows():
    y, p = simulated(1.3, 0.2, n=600)
    weights = resample_weights(len(y), n_resamples=5, seed=4)
    draws = np.random.default_rng(4).integers(0, len(y), size=(5, len(y)))
    intercepts, slopes = intercept_and_slope(y, p, weights)
    lp = logit(p, floor=LOGIT_CLIP)
    for index, drawn in enumerate(draws):
        expected = binomial_glm(y[drawn], sm.add_constant(lp[drawn]))
        assert slopes[index] == pytest.approx(expected[1], abs=1e-6)
        expected = binomial_glm(y[drawn], np.ones((len(drawn), 1)), offset=lp[drawn])
        assert intercepts[index] == pytest.approx(expected[0], abs=1e-6)


def statsmodels_profile(y, lp, parameter: str, value: float) -> float:
    """Reference profile log-likelihood from statsmodels: the parameter is held fixed by
    moving it into the offset, the remaining intercept (if any) is refitted by the GLM."""
    if parameter == "calibration_intercept":
        eta = value + lp
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    fit = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=value * lp).fit()
    return float(fit.llf)


def brute_force_bounds(y, lp, parameter: str, estimate: float, top: float):
    """Where 2 (l_max - l_p) crosses chi2(1, 0.95) on a fine grid (bisection per side)."""
    critical = 3.841458820694124

    def over(value: float) -> bool:
        return 2 * (top - statsmodels_profile(y, lp, parameter, value)) > critical

    bounds = []
    for direction in (-1.0, 1.0):
        inside, outside = estimate, estimate + direction
        while not over(outside):
            outside += direction
        for _ in range(40):
            middle = (inside + outside) / 2
            inside, outside = (inside, middle) if over(middle) else (middle, outside)
        bounds.append((inside + outside) / 2)
    return bounds


@pytest.mark.parametrize("distortion, shift, n", [(1.0, 0.0, 1000), (0.8, 0.4, 600)])
def test_profile_likelihood_intervals_match_a_statsmodels_profile(distortion, shift, n):
    y, p = simulated(distortion, shift, n=n)
    lp = logit(p, floor=LOGIT_CLIP)
    result = calibration_intercept_slope(y, p)
    top = {
        "calibration_intercept": binomial_glm_llf(y, np.ones((n, 1)), offset=lp),
        "calibration_slope": binomial_glm_llf(y, sm.add_constant(lp)),
    }
    for name, entry in result.items():
        low, high = brute_force_bounds(y, lp, name, entry["value"], top[name])
        assert entry["ci_low"] == pytest.approx(low, abs=1e-5)
        assert entry["ci_high"] == pytest.approx(high, abs=1e-5)
        # Asymmetric, unlike a Wald interval: the likelihood is not a parabola.
        assert entry["ci_low"] < entry["value"] < entry["ci_high"]


def binomial_glm_llf(y, design, offset=None) -> float:
    return float(sm.GLM(y, design, family=sm.families.Binomial(), offset=offset).fit().llf)


def test_profile_interval_is_wider_than_wald_for_a_small_sample_slope():
    """Few events: the slope's likelihood is skewed, so the profile interval differs from
    the symmetric Wald interval (statsmodels' bse) and is not centred on the estimate."""
    y, p = simulated(1.0, 0.0, n=400, seed=3)
    result = calibration_intercept_slope(y, p)["calibration_slope"]
    fit = sm.GLM(
        y, sm.add_constant(logit(p, floor=LOGIT_CLIP)), family=sm.families.Binomial()
    ).fit()
    wald_low, wald_high = fit.conf_int()[1]
    assert result["value"] == pytest.approx(fit.params[1], abs=1e-6)
    assert (result["ci_high"] - result["value"]) != pytest.approx(
        result["value"] - result["ci_low"], rel=0.02
    )
    assert abs(result["ci_low"] - wald_low) > 1e-3 or abs(result["ci_high"] - wald_high) > 1e-3


def test_a_resample_without_events_is_nan_not_a_crash():
    y = np.array([0, 0, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4])
    beta = fit_logistic(
        np.ones((4, 1)), y, np.array([[1.0, 1.0, 2.0, 0.0]]), offset=logit(p, floor=LOGIT_CLIP)
    )
    assert np.isnan(beta).all()


def test_smoothed_curve_is_the_spline_glm_with_a_band():
    y, p = simulated(1.5, -0.3, n=2000)
    curve = smoothed_calibration_curve(y, p, n_resamples=100, seed=0, grid_size=15)
    lp = logit(p, floor=LOGIT_CLIP)
    knots = spline_knots(lp, 3)
    params = binomial_glm(y, sm.add_constant(restricted_cubic_spline(lp, knots)))
    grid = sm.add_constant(
        restricted_cubic_spline(logit(curve["predicted"].to_numpy(), floor=LOGIT_CLIP), knots)
    )
    assert curve["observed"].to_numpy() == pytest.approx(expit(grid @ params), abs=1e-7)
    assert (curve["ci_low"] <= curve["observed"]).all()
    assert (curve["observed"] <= curve["ci_high"]).all()


def test_spline_basis_is_linear_beyond_the_outer_knots():
    knots = np.array([-2.0, 0.0, 2.0])
    x = np.array([3.0, 4.0, 5.0, 6.0])
    basis = restricted_cubic_spline(x, knots)
    assert np.diff(basis[:, 1], 2) == pytest.approx(np.zeros(2), abs=1e-12)
    assert restricted_cubic_spline(np.array([-5.0, -3.0]), knots)[:, 1] == pytest.approx([0, 0])


def test_profile_intervals_are_open_or_absent_when_the_likelihood_never_falls_enough():
    """No events: nothing to estimate. Perfect separation: the slope's likelihood keeps
    rising, so its interval has no upper bound (None), instead of a made-up number."""
    p = np.linspace(0.01, 0.5, 50)
    empty = calibration_intercept_slope(np.zeros(50), p)
    assert all(value is None for entry in empty.values() for value in entry.values())
    y = np.r_[np.zeros(45), np.ones(5)]
    p = np.r_[np.linspace(0.01, 0.2, 45), np.linspace(0.6, 0.9, 5)]
    slope = calibration_intercept_slope(y, p)["calibration_slope"]
    assert slope["ci_low"] is not None and slope["ci_low"] > 1
    assert slope["ci_high"] is None
