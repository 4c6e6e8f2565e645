"""Planted scenarios: outcome labels drawn from a known truth, to prove the protocol.

Each scenario states the true log-odds of the population the deployed model meets as
``intercept + slope * deployed log-odds``, so the right update is known in advance:
no change (0, 1) -> keep; prevalence doubled (the intercept that doubles the mean risk, 1)
-> recalibration in the large; risk effects weakened (0, 0.6) -> logistic recalibration.
A fresh draw of outcomes from the same truth then checks the update (calibration in the
large within its CI of 0, slope near 1). Used by tests/updating and benchmarks/updating.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from stroke_risk.evaluation.calibration import calibration_intercept_slope
from stroke_risk.updating.protocol import Decision, Method, Protocol, decide


@dataclass(frozen=True)
class Scenario:
    """A population: true log-odds = true_intercept + true_slope * deployed log-odds."""

    name: str
    expected: Method
    true_intercept: float
    true_slope: float
    n_labels: int


@dataclass
class ScenarioResult:
    """What the protocol did over many simulated label sets of one scenario."""

    scenario: Scenario
    n_sets: int
    methods: Counter[str] = field(default_factory=Counter)
    # On fresh outcomes, for the sets where an update was made:
    fresh_intercepts: list[float] = field(default_factory=list)
    fresh_intercept_covers_zero: list[bool] = field(default_factory=list)
    fresh_slopes: list[float] = field(default_factory=list)
    # Sets that stopped at the minimum-events check, and how many labels they asked for.
    more_labels_needed: list[int] = field(default_factory=list)

    @property
    def right_rate(self) -> float:
        return self.methods[self.scenario.expected] / self.n_sets

    @property
    def wrong_update_rate(self) -> float:
        """Sets where an update other than the expected one was made."""
        wrong = sum(n for m, n in self.methods.items() if m not in ("keep", self.scenario.expected))
        if self.scenario.expected == "keep":
            wrong = sum(n for m, n in self.methods.items() if m != "keep")
        return wrong / self.n_sets


def monte_carlo_error(rate: float, n_sets: int) -> float:
    """Standard error of a proportion estimated from n_sets independent simulations."""
    return float(np.sqrt(rate * (1 - rate) / n_sets))


def intercept_for_mean_risk(deployed_log_odds: np.ndarray, target_mean_risk: float) -> float:
    """The shift of the log-odds that makes the population's mean risk target_mean_risk."""
    lp = np.asarray(deployed_log_odds, dtype=float)
    return float(
        brentq(lambda shift: float(np.mean(expit(lp + shift))) - target_mean_risk, -20, 20)
    )


def development_like_log_odds(n: int, rng: np.random.Generator) -> np.ndarray:
    """Deployed log-odds shaped like the stroke model's (mean risk ~5 %, ROC-AUC ~0.8)."""
    return rng.normal(-3.6, 1.3, size=n)


def planted_scenarios(
    reference_log_odds: np.ndarray, *, n_labels: int, few_labels: int
) -> list[Scenario]:
    """The four scenarios of issue 20 for a population with these deployed log-odds."""
    doubled = intercept_for_mean_risk(
        reference_log_odds, 2 * float(np.mean(expit(reference_log_odds)))
    )
    return [
        Scenario("no change", "keep", 0.0, 1.0, n_labels),
        Scenario("prevalence doubled", "recalibration_in_the_large", doubled, 1.0, n_labels),
        Scenario(
            "risk effects weakened (0.6 x logit)", "logistic_recalibration", 0.0, 0.6, n_labels
        ),
        Scenario("too few events", "keep", 0.0, 1.0, few_labels),
    ]


def draw_outcomes(
    deployed_log_odds: np.ndarray, scenario: Scenario, rng: np.random.Generator
) -> np.ndarray:
    """Outcomes (0/1) of patients with these deployed log-odds under the scenario's truth."""
    truth = scenario.true_intercept + scenario.true_slope * np.asarray(deployed_log_odds)
    return (rng.random(len(truth)) < expit(truth)).astype(int)


def run_scenario(
    scenario: Scenario,
    protocol: Protocol,
    *,
    n_sets: int,
    seed: int,
    sample_log_odds: Callable[[int, np.random.Generator], np.ndarray] = development_like_log_odds,
    fresh_labels: int | None = None,
) -> ScenarioResult:
    """Apply the protocol to n_sets label sets drawn from the scenario; check each update on
    fresh_labels (default: as many as the label set) fresh outcomes of the same population,
    the next validation a team would run."""
    rng = np.random.default_rng(seed)
    result = ScenarioResult(scenario, n_sets)
    for index in range(n_sets):
        lp = sample_log_odds(scenario.n_labels, rng)
        y = draw_outcomes(lp, scenario, rng)
        decision: Decision = decide(y, expit(lp), _with_seed(protocol, seed + index))
        result.methods[decision.method] += 1
        if not decision.events.sufficient:
            result.more_labels_needed.append(decision.events.more_labels_needed)
        if decision.updated:
            fresh_lp = sample_log_odds(fresh_labels or scenario.n_labels, rng)
            fresh_y = draw_outcomes(fresh_lp, scenario, rng)
            updated = decision.recalibration.probability(expit(fresh_lp))
            fresh = calibration_intercept_slope(fresh_y, updated)
            intercept = fresh["calibration_intercept"]
            result.fresh_intercepts.append(float(intercept["value"] or np.nan))
            low, high = intercept["ci_low"], intercept["ci_high"]
            result.fresh_intercept_covers_zero.append(
                (low is None or low <= 0) and (high is None or high >= 0)
            )
            result.fresh_slopes.append(float(fresh["calibration_slope"]["value"] or np.nan))
    return result


def _with_seed(protocol: Protocol, seed: int) -> Protocol:
    return replace(protocol, seed=seed)
