"""Net benefit against the published formula and a hand-worked example."""

import numpy as np
import pandas as pd
import pytest

from stroke_risk.evaluation.decision_curve import (
    decision_curve,
    describe_ranges,
    net_benefit,
    treat_all_net_benefit,
    useful_ranges,
)
from stroke_risk.evaluation.metrics import resample_weights


def test_hand_worked_example():
    # 10 patients, 2 strokes. At pt = 0.2 the rule flags p >= 0.2: rows 0-3, with 2 true
    # and 2 false positives: NB = 2/10 - 2/10 * 0.2/0.8 = 0.15. Treat all: 2/10 - 8/10 *
    # 0.25 = 0.0. At pt = 0.5 only row 0 is flagged (a stroke): NB = 0.1.
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.6, 0.4, 0.3, 0.2, 0.1, 0.1, 0.05, 0.05, 0.01, 0.01])
    assert net_benefit(y, p, [0.2, 0.5]) == pytest.approx([0.15, 0.1])
    assert treat_all_net_benefit(y, [0.2, 0.5]) == pytest.approx([0.0, 0.2 - 0.8])


def test_matches_the_formula_on_random_data():
    rng = np.random.default_rng(0)
    p = rng.beta(1, 15, 2000)
    y = (rng.random(2000) < p).astype(int)
    thresholds = np.arange(0.01, 0.31, 0.01)
    for pt, value in zip(thresholds, net_benefit(y, p, thresholds), strict=True):
        flagged = p >= pt
        tp, fp = np.sum(flagged & (y == 1)), np.sum(flagged & (y == 0))
        assert value == pytest.approx(tp / len(y) - fp / len(y) * pt / (1 - pt))


def test_weighted_net_benefit_equals_net_benefit_of_the_resampled_rows():
    rng = np.random.default_rng(1)
    p = rng.random(300) * 0.4
    y = (rng.random(300) < p).astype(int)
    weights = resample_weights(300, n_resamples=4, seed=2)
    draws = np.random.default_rng(2).integers(0, 300, size=(4, 300))
    batched = net_benefit(y, p, [0.05, 0.1], weights)
    everyone = treat_all_net_benefit(y, [0.05, 0.1], weights)
    for index, drawn in enumerate(draws):
        assert batched[index] == pytest.approx(net_benefit(y[drawn], p[drawn], [0.05, 0.1]))
        assert everyone[index] == pytest.approx(treat_all_net_benefit(y[drawn], [0.05, 0.1]))


def test_curve_and_useful_ranges():
    rng = np.random.default_rng(3)
    p = rng.beta(0.6, 10, 4000)
    y = (rng.random(4000) < p).astype(int)
    curve = decision_curve(y, p, n_resamples=200, seed=0)
    assert curve["threshold"].iloc[0] == 0.01 and curve["threshold"].iloc[-1] == 0.3
    assert (curve["model_ci_low"] <= curve["model"]).all()
    assert (curve["model"] <= curve["model_ci_high"]).all()
    expected = curve["model"] - np.maximum(curve["treat_all"], 0)
    assert curve["advantage"].to_numpy() == pytest.approx(expected.to_numpy())
    ranges = useful_ranges(curve)
    assert ranges["beats_defaults"] and ranges["max_advantage"] > 0


def test_ranges_are_contiguous_runs():
    curve = pd.DataFrame(
        {
            "threshold": [0.01, 0.02, 0.03, 0.04, 0.05],
            "advantage": [0.1, 0.1, -0.1, 0.1, 0.1],
            "advantage_ci_low": [0.01, None, -0.2, -0.1, 0.02],
        }
    )
    ranges = useful_ranges(curve)
    assert ranges["beats_defaults"] == [[0.01, 0.02], [0.04, 0.05]]
    assert ranges["confidently_beats_defaults"] == [[0.01, 0.01], [0.05, 0.05]]
    assert describe_ranges(ranges["beats_defaults"]) == "1%-2%, 4%-5%"
    assert describe_ranges([]) == "no threshold"
