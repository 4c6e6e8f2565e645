"""External validation statistics and the verdict (stroke_risk/updating/validation.py)."""

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from stroke_risk.evaluation.decision_curve import net_benefit
from stroke_risk.updating.simulation import development_like_log_odds
from stroke_risk.updating.validation import roc_auc_difference, validation_statistics, verdict


def labels(shift: float, slope: float = 1.0, n: int = 5000, seed: int = 0):
    rng = np.random.default_rng(seed)
    lp = development_like_log_odds(n, rng)
    y = (rng.random(n) < expit(shift + slope * lp)).astype(int)
    return y, expit(lp)


# A development test split of the same population.
Y_DEVELOPMENT, P_DEVELOPMENT = labels(0.0, n=3000, seed=99)


def validated(y, p):
    """(statistics, verdict) as the validate_outcomes stage computes them."""
    development = validation_statistics(
        Y_DEVELOPMENT, P_DEVELOPMENT, decision_threshold=0.05, n_resamples=200, seed=1
    )
    statistics = validation_statistics(y, p, decision_threshold=0.05, n_resamples=200, seed=1)
    statistics["roc_auc_difference"] = roc_auc_difference(
        y, p, Y_DEVELOPMENT, P_DEVELOPMENT, n_resamples=200, seed=1
    )
    return statistics, verdict(statistics, development)


def test_statistics_have_point_values_inside_their_intervals():
    y, p = labels(0.0)
    statistics = validation_statistics(y, p, decision_threshold=0.05, n_resamples=200, seed=1)
    assert statistics["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert statistics["net_benefit"]["value"] == pytest.approx(net_benefit(y, p, [0.05])[0])
    for key in ("roc_auc", "calibration_intercept", "calibration_slope", "brier", "net_benefit"):
        entry = statistics[key]
        assert entry["ci_low"] < entry["value"] < entry["ci_high"], key


def test_a_calibrated_model_holds():
    _, result = validated(*labels(0.0, seed=2))
    assert result.holds, result.problems
    assert result.sentence.startswith("The model still holds")


def test_a_doubled_prevalence_is_named_as_under_prediction():
    _, result = validated(*labels(0.75, seed=3))
    assert not result.holds
    assert "under-predicts" in result.sentence


def test_weakened_effects_are_named_as_too_extreme():
    _, result = validated(*labels(0.0, slope=0.6, seed=4))
    assert any("too extreme" in problem for problem in result.problems)


def test_a_model_that_lost_discrimination_is_named():
    rng = np.random.default_rng(50)  # not labels()'s seed: the noise must be independent
    y, p = labels(0.0, seed=5)
    noisy = expit(np.log(p / (1 - p)) * 0.3 + rng.normal(0, 1.2, len(p)) - 2.2)
    statistics, result = validated(y, noisy)
    assert statistics["roc_auc_difference"]["ci_high"] < 0
    assert any("discriminates worse" in problem for problem in result.problems)
    difference = statistics["roc_auc_difference"]["value"]
    assert difference == pytest.approx(
        roc_auc_score(y, noisy) - roc_auc_score(Y_DEVELOPMENT, P_DEVELOPMENT)
    )
