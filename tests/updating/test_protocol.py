"""The updating protocol (stroke_risk/updating/protocol.py) on planted scenarios.

Small versions of benchmarks/updating.py's simulation (which runs >= 200 label sets per
scenario and prints the table): enough sets that a protocol without its closed test, its
minimum events or its held-out check fails them.
"""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.special import expit

from stroke_risk.evaluation.calibration import LOGIT_CLIP
from stroke_risk.log_odds import logit
from stroke_risk.updating.protocol import (
    Protocol,
    Recalibration,
    closed_test,
    count_events,
    decide,
    held_out_split,
    judge_on_held_out,
)
from stroke_risk.updating.simulation import (
    development_like_log_odds,
    draw_outcomes,
    planted_scenarios,
    run_scenario,
)

N_LABELS = 4000  # ~200 events at the stroke model's ~5 % risk
N_SETS = 30


@pytest.fixture(scope="module")
def scenarios():
    reference = development_like_log_odds(100_000, np.random.default_rng(0))
    return {s.name: s for s in planted_scenarios(reference, n_labels=N_LABELS, few_labels=600)}


def test_likelihood_ratio_statistics_match_statsmodels():
    rng = np.random.default_rng(4)
    lp = development_like_log_odds(3000, rng)
    y = (rng.random(3000) < expit(0.3 + 0.8 * lp)).astype(int)
    test = closed_test(y, expit(lp), alpha=0.05)
    full = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    shifted = sm.GLM(y, np.ones((3000, 1)), family=sm.families.Binomial(), offset=lp).fit()
    original = -0.5 * sm.families.Binomial().deviance(y, expit(lp))
    assert test.tests[0].statistic == pytest.approx(2 * (full.llf - original), rel=1e-6)
    assert test.tests[0].degrees_of_freedom == 2
    assert test.tests[1].statistic == pytest.approx(2 * (full.llf - shifted.llf), rel=1e-6)
    assert test.tests[1].degrees_of_freedom == 1
    fitted = test.fits["logistic_recalibration"]
    assert (fitted.intercept, fitted.slope) == pytest.approx(tuple(full.params), abs=1e-6)


def test_closed_test_stops_at_the_first_simpler_method_not_beaten():
    rng = np.random.default_rng(5)
    lp = development_like_log_odds(6000, rng)
    y = (rng.random(6000) < expit(lp + 0.8)).astype(int)
    test = closed_test(y, expit(lp), alpha=0.05)
    assert test.method == "recalibration_in_the_large"
    assert [t.significant for t in test.tests] == [True, False]
    # With only intercept updates allowed, the most extensive method is that one.
    narrow = closed_test(y, expit(lp), alpha=0.05, allowed=("recalibration_in_the_large",))
    assert narrow.method == "recalibration_in_the_large"
    assert len(narrow.tests) == 1 and narrow.tests[0].degrees_of_freedom == 1


def test_recalibration_maps_log_odds():
    update = Recalibration(intercept=0.5, slope=0.6)
    p = np.array([0.01, 0.2, 0.7])
    assert logit(update.probability(p), floor=LOGIT_CLIP) == pytest.approx(
        0.5 + 0.6 * logit(p, floor=LOGIT_CLIP)
    )
    assert Recalibration().probability(p) == pytest.approx(p)


def test_held_out_split_is_stratified_and_disjoint():
    y = np.r_[np.ones(90, int), np.zeros(910, int)]
    updating, held = held_out_split(y, fraction=1 / 3, seed=1)
    assert len(np.intersect1d(updating, held)) == 0
    assert len(updating) + len(held) == len(y)
    assert y[held].sum() == 30 and len(held) == 30 + 303


def test_count_events_says_how_many_more_labels_are_needed():
    y = np.r_[np.ones(20, int), np.zeros(380, int)]  # 5 % prevalence
    count = count_events(y, min_events=100, min_non_events=100)
    assert not count.sufficient
    assert count.more_events_needed == 80
    assert count.more_labels_needed == 1600  # 80 events at 5 %
    assert (
        count_events(np.zeros(50, int), min_events=10, min_non_events=10).more_labels_needed == 10
    )


def test_no_change_keeps_the_model(scenarios):
    result = run_scenario(scenarios["no change"], Protocol(), n_sets=N_SETS, seed=11)
    # alpha = 0.05 with a held-out check: >= 3 wrong updates in 30 sets has chance < 2 %.
    assert result.wrong_update_rate <= 2 / N_SETS


def test_prevalence_doubled_recalibrates_in_the_large(scenarios):
    result = run_scenario(scenarios["prevalence doubled"], Protocol(), n_sets=N_SETS, seed=12)
    assert result.methods["recalibration_in_the_large"] >= 0.8 * N_SETS
    # On fresh outcomes the update's calibration in the large is back near 0 ...
    assert abs(np.mean(result.fresh_intercepts)) < 0.1
    # ... and mostly inside its own 95 % CI (the update's own estimation error costs some).
    assert np.mean(result.fresh_intercept_covers_zero) >= 0.7


def test_weakened_effects_recalibrate_the_slope(scenarios):
    scenario = scenarios["risk effects weakened (0.6 x logit)"]
    result = run_scenario(scenario, Protocol(), n_sets=N_SETS, seed=13)
    assert result.methods["logistic_recalibration"] >= 0.8 * N_SETS
    assert np.mean(result.fresh_slopes) == pytest.approx(1.0, abs=0.1)


def test_too_few_events_keeps_and_says_how_many_more(scenarios):
    scenario = scenarios["too few events"]
    rng = np.random.default_rng(14)
    lp = development_like_log_odds(scenario.n_labels, rng)
    y = draw_outcomes(lp, scenario, rng)
    decision = decide(y, expit(lp), Protocol())
    assert decision.method == "keep" and decision.closed_test is None
    assert decision.events.more_events_needed == 100 - y.sum()
    assert f"about {decision.events.more_labels_needed} more labels" in decision.reason


def test_held_out_labels_reject_an_update_they_do_not_support():
    rng = np.random.default_rng(15)
    lp = development_like_log_odds(2000, rng)
    unchanged = (rng.random(2000) < expit(lp)).astype(int)
    wrong = judge_on_held_out(unchanged, expit(lp), Recalibration(intercept=0.7), Protocol())
    assert not wrong.accepted
    assert any("log-likelihood gain" in reason for reason in wrong.failed_criteria)
    assert any("calibration intercept" in reason for reason in wrong.failed_criteria)
    shifted = (rng.random(2000) < expit(lp + 0.7)).astype(int)
    right = judge_on_held_out(shifted, expit(lp), Recalibration(intercept=0.7), Protocol())
    assert right.accepted, right.failed_criteria
