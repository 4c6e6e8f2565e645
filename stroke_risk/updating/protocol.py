"""The updating protocol: which update (if any) the new outcome labels justify.

The methods, from least to most extensive (Steyerberg, *Clinical Prediction Models*, 2nd ed.
2019, ch. 20, Table 20.2; Janssen et al. 2008, J Clin Epidemiol 61:76), with lp the deployed
model's log-odds:

- ``keep``: the deployed model unchanged, logit P(y=1) = lp;
- ``recalibration_in_the_large``: a new intercept, logit P(y=1) = a + lp;
- ``logistic_recalibration``: a new intercept and slope, logit P(y=1) = a + b * lp;
- ``refit`` (d): re-estimate every coefficient on development + new data. Not chosen here:
  it needs the raw fields (not stored in binned mode) and a new fit of the whole pipeline,
  so it is a training run (``dvc exp run``) evaluated on the held-out test split and
  released through the same gates as any model (README "Outcome labels").

Choosing between the first three is the closed testing procedure of Vergouwe et al. 2017
(Stat Med 36:4529), applied with logistic recalibration as the most extensive method:
likelihood-ratio tests of the most extensive method against each simpler one, in order of
extensiveness, each at level alpha. Because the first test is the global one (the most
extensive against the original, 2 df), the chance of any update when the model is right
stays at about alpha. Before any test the labels must hold a minimum number of events and
non-events (Vergouwe et al. 2005, J Clin Epidemiol 58:475: >= 100 of each for validation;
Collins et al. 2016, Stat Med 35:214). The chosen update is then checked on a held-out part of
the labels, stratified by outcome, that neither the test nor the fit saw; it is accepted
only when it meets every declared criterion there.

Pure functions of numpy arrays and a protocol record: no I/O, no params parsing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.special import expit
from scipy.stats import chi2

from stroke_risk.evaluation.calibration import (
    LOGIT_CLIP,
    calibration_intercept_slope,
    fit_logistic,
    logistic_log_likelihood,
)
from stroke_risk.log_odds import logit

Method = Literal["keep", "recalibration_in_the_large", "logistic_recalibration"]
# Least to most extensive: the closed test walks this order.
RECALIBRATION_METHODS: tuple[Method, ...] = (
    "keep",
    "recalibration_in_the_large",
    "logistic_recalibration",
)
# Free parameters of each method (degrees of freedom of the likelihood-ratio tests).
PARAMETERS: dict[Method, int] = {
    "keep": 0,
    "recalibration_in_the_large": 1,
    "logistic_recalibration": 2,
}


@dataclass(frozen=True)
class Protocol:
    """The declared plan (conf/updating/change_control.yaml, section ``updating``)."""

    allowed_methods: tuple[Method, ...] = RECALIBRATION_METHODS
    alpha: float = 0.05
    min_events: int = 100
    min_non_events: int = 100
    held_out_fraction: float = 1 / 3
    seed: int = 0
    # Acceptance on the held-out labels: the update's log-likelihood must beat the deployed
    # model's by at least this much (0: any improvement), and its calibration intercept's
    # and slope's 95 % profile-likelihood intervals must contain 0 and 1.
    min_log_likelihood_gain: float = 0.0
    require_calibrated_on_held_out: bool = True


@dataclass(frozen=True)
class Recalibration:
    """New log-odds = intercept + slope * deployed log-odds (keep: 0 and 1)."""

    intercept: float = 0.0
    slope: float = 1.0

    def log_odds(self, deployed_log_odds: np.ndarray) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(deployed_log_odds, dtype=float)

    def probability(self, deployed_probability: np.ndarray) -> np.ndarray:
        """The updated probabilities of patients the deployed model gave these."""
        return np.asarray(expit(self.log_odds(logit(deployed_probability, floor=LOGIT_CLIP))))


@dataclass(frozen=True)
class LikelihoodRatioTest:
    """One step of the closed test: `extensive` against `simpler`."""

    extensive: Method
    simpler: Method
    statistic: float
    degrees_of_freedom: int
    p_value: float
    significant: bool


@dataclass(frozen=True)
class ClosedTest:
    """Fits of every method, the tests run (in order) and the method they select."""

    method: Method
    fits: dict[Method, Recalibration]
    log_likelihoods: dict[Method, float]
    tests: list[LikelihoodRatioTest]


@dataclass(frozen=True)
class EventCount:
    """Whether the labels hold enough events and non-events, and how many more are needed."""

    labels: int
    events: int
    non_events: int
    more_events_needed: int
    more_non_events_needed: int
    # At the observed prevalence (or 1 label per missing event when there is none yet).
    more_labels_needed: int

    @property
    def sufficient(self) -> bool:
        return self.more_events_needed == 0 and self.more_non_events_needed == 0


@dataclass(frozen=True)
class Acceptance:
    """The chosen update judged on the held-out labels."""

    labels: int
    events: int
    log_likelihood_deployed: float
    log_likelihood_updated: float
    calibration_intercept: dict[str, float | None]
    calibration_slope: dict[str, float | None]
    failed_criteria: list[str]

    @property
    def accepted(self) -> bool:
        return not self.failed_criteria


@dataclass(frozen=True)
class Decision:
    """What the protocol decided and the evidence: the report and update.json render this."""

    method: Method
    recalibration: Recalibration
    reason: str
    events: EventCount
    closed_test: ClosedTest | None = None
    acceptance: Acceptance | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def updated(self) -> bool:
        return self.method != "keep"


def count_events(
    y_true: np.ndarray,
    *,
    min_events: int,
    min_non_events: int,
    expected_prevalence: float | None = None,
) -> EventCount:
    """Events and non-events against the minimums, with how many more labels would do.

    More labels are estimated at the observed prevalence, or at expected_prevalence (e.g.
    the development data's) while no event has been labelled yet."""
    y = np.asarray(y_true, dtype=int)
    events = int(y.sum())
    non_events = int(len(y) - events)
    more_events = max(0, min_events - events)
    more_non_events = max(0, min_non_events - non_events)
    prevalence = events / len(y) if len(y) and events else expected_prevalence
    if more_events and prevalence is not None:
        more_labels = math.ceil(more_events / prevalence)
    else:
        more_labels = more_events
    if more_non_events and prevalence is not None and prevalence < 1:
        more_labels = max(more_labels, math.ceil(more_non_events / (1 - prevalence)))
    elif more_non_events:
        more_labels = max(more_labels, more_non_events)
    return EventCount(
        labels=len(y),
        events=events,
        non_events=non_events,
        more_events_needed=more_events,
        more_non_events_needed=more_non_events,
        more_labels_needed=more_labels,
    )


def fit_recalibrations(
    y_true: np.ndarray, deployed_probability: np.ndarray
) -> tuple[dict[Method, Recalibration], dict[Method, float]]:
    """Maximum-likelihood fit of each recalibration method and its log-likelihood."""
    y = np.asarray(y_true, dtype=float)
    lp = logit(deployed_probability, floor=LOGIT_CLIP)
    ones = np.ones((len(lp), 1))
    unit = np.ones(len(lp))
    intercept = float(fit_logistic(ones, y, unit, offset=lp)[0, 0])
    both = fit_logistic(np.c_[ones, lp], y, unit, start=np.array([0.0, 1.0]))[0]
    fits: dict[Method, Recalibration] = {
        "keep": Recalibration(),
        "recalibration_in_the_large": Recalibration(intercept=intercept),
        "logistic_recalibration": Recalibration(intercept=float(both[0]), slope=float(both[1])),
    }
    log_likelihoods = {
        method: logistic_log_likelihood(y, fit.log_odds(lp)) for method, fit in fits.items()
    }
    return fits, log_likelihoods


def closed_test(
    y_true: np.ndarray,
    deployed_probability: np.ndarray,
    *,
    alpha: float,
    allowed: tuple[Method, ...] = RECALIBRATION_METHODS,
) -> ClosedTest:
    """Vergouwe et al. 2017's closed testing procedure over the allowed recalibrations.

    The most extensive allowed method M is tested against each simpler allowed method in
    order (keep first) by a likelihood-ratio test with df = the difference in parameters.
    The first simpler method M is not significantly better than is chosen; when M beats
    them all, M is chosen. ``keep`` is always a candidate (it is the null of the first test).
    """
    fits, log_likelihoods = fit_recalibrations(y_true, deployed_probability)
    candidates = [m for m in RECALIBRATION_METHODS if m == "keep" or m in allowed]
    most_extensive = candidates[-1]
    tests: list[LikelihoodRatioTest] = []
    for simpler in candidates[:-1]:
        statistic = max(0.0, 2.0 * (log_likelihoods[most_extensive] - log_likelihoods[simpler]))
        df = PARAMETERS[most_extensive] - PARAMETERS[simpler]
        p_value = float(chi2.sf(statistic, df))
        significant = p_value < alpha
        tests.append(
            LikelihoodRatioTest(most_extensive, simpler, statistic, df, p_value, significant)
        )
        if not significant:
            return ClosedTest(simpler, fits, log_likelihoods, tests)
    return ClosedTest(most_extensive, fits, log_likelihoods, tests)


def held_out_split(
    y_true: np.ndarray, *, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(updating rows, held-out rows): a random split stratified by outcome, so both parts
    keep the labels' prevalence. Indices are sorted."""
    y = np.asarray(y_true, dtype=int)
    rng = np.random.default_rng(seed)
    held_out: list[np.ndarray] = []
    for outcome in (0, 1):
        rows = np.flatnonzero(y == outcome)
        rng.shuffle(rows)
        held_out.append(rows[: int(round(fraction * len(rows)))])
    held = np.sort(np.concatenate(held_out))
    updating = np.setdiff1d(np.arange(len(y)), held)
    return updating, held


def judge_on_held_out(
    y_true: np.ndarray,
    deployed_probability: np.ndarray,
    recalibration: Recalibration,
    protocol: Protocol,
) -> Acceptance:
    """Apply the declared acceptance criteria to an update on labels it was not fitted on."""
    y = np.asarray(y_true, dtype=float)
    lp = logit(deployed_probability, floor=LOGIT_CLIP)
    deployed = logistic_log_likelihood(y, lp)
    updated_log_odds = recalibration.log_odds(lp)
    updated = logistic_log_likelihood(y, updated_log_odds)
    calibration = calibration_intercept_slope(y, np.asarray(expit(updated_log_odds)))
    failed: list[str] = []
    gain = updated - deployed
    if not gain > protocol.min_log_likelihood_gain:
        failed.append(
            f"held-out log-likelihood gain {gain:.3f} is not above "
            f"{protocol.min_log_likelihood_gain:g}"
        )
    if protocol.require_calibrated_on_held_out:
        for name, target in (("calibration_intercept", 0.0), ("calibration_slope", 1.0)):
            low, high = calibration[name]["ci_low"], calibration[name]["ci_high"]
            inside = (low is None or low <= target) and (high is None or target <= high)
            if not inside:
                failed.append(
                    f"held-out {name.replace('_', ' ')} 95% CI [{_fmt(low)}, {_fmt(high)}]"
                    f" excludes {target:g}"
                )
    if recalibration.slope <= 0:
        failed.append("the slope is not positive (the update would reverse the ranking)")
    return Acceptance(
        labels=len(y),
        events=int(y.sum()),
        log_likelihood_deployed=deployed,
        log_likelihood_updated=updated,
        calibration_intercept=calibration["calibration_intercept"],
        calibration_slope=calibration["calibration_slope"],
        failed_criteria=failed,
    )


def decide(
    y_true: np.ndarray,
    deployed_probability: np.ndarray,
    protocol: Protocol,
    *,
    expected_prevalence: float | None = None,
) -> Decision:
    """Run the whole protocol on the labels of the deployed model's own predictions.

    1. Too few events or non-events: keep, saying how many more are needed.
    2. Closed test on the updating part (all labels but the held-out part).
    3. A chosen update is judged on the held-out part; rejected there: keep.
    4. Accepted: the chosen method is re-estimated on all labels (the held-out part judged
       the method and its fitting procedure; the final coefficients use every label, as
       Steyerberg ch. 20 advises for small update samples).
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(deployed_probability, dtype=float)
    events = count_events(
        y,
        min_events=protocol.min_events,
        min_non_events=protocol.min_non_events,
        expected_prevalence=expected_prevalence,
    )
    if not events.sufficient:
        return Decision(
            method="keep",
            recalibration=Recalibration(),
            reason=(
                f"too few outcomes to update: {events.events} events and "
                f"{events.non_events} non-events, the plan needs {protocol.min_events} and "
                f"{protocol.min_non_events}; about {events.more_labels_needed} more labels "
                f"({events.more_events_needed} more events) are needed"
            ),
            events=events,
        )
    updating, held = held_out_split(y, fraction=protocol.held_out_fraction, seed=protocol.seed)
    test = closed_test(
        y[updating], p[updating], alpha=protocol.alpha, allowed=protocol.allowed_methods
    )
    if test.method == "keep":
        return Decision(
            method="keep",
            recalibration=Recalibration(),
            reason=(
                "the closed test keeps the model: no recalibration fits the new outcomes "
                f"significantly better ({describe_tests(test.tests)}; "
                f"alpha = {protocol.alpha:g})"
            ),
            events=events,
            closed_test=test,
        )
    acceptance = judge_on_held_out(y[held], p[held], test.fits[test.method], protocol)
    if not acceptance.accepted:
        return Decision(
            method="keep",
            recalibration=Recalibration(),
            reason=(
                f"{test.method.replace('_', ' ')} was chosen by the closed test but rejected on "
                f"the held-out labels: {'; '.join(acceptance.failed_criteria)}"
            ),
            events=events,
            closed_test=test,
            acceptance=acceptance,
        )
    final_fits, _ = fit_recalibrations(y, p)
    return Decision(
        method=test.method,
        recalibration=final_fits[test.method],
        reason=(
            f"{test.method.replace('_', ' ')} chosen by the closed test "
            f"({describe_tests(test.tests)}) and accepted on {acceptance.labels} held-out labels"
        ),
        events=events,
        closed_test=test,
        acceptance=acceptance,
    )


def decide_for_family(
    y_true: np.ndarray,
    deployed_probability: np.ndarray,
    protocol: Protocol,
    *,
    family: str,
    recalibratable: tuple[str, ...],
    expected_prevalence: float | None = None,
) -> Decision:
    """decide() for a model of this family: families whose artifacts cannot express a
    recalibration (not a logistic regression) are kept; their update is a refit (training)."""
    if family in recalibratable:
        return decide(
            y_true, deployed_probability, protocol, expected_prevalence=expected_prevalence
        )
    events = count_events(
        y_true,
        min_events=protocol.min_events,
        min_non_events=protocol.min_non_events,
        expected_prevalence=expected_prevalence,
    )
    return Decision(
        method="keep",
        recalibration=Recalibration(),
        reason=(
            f"the plan recalibrates only {', '.join(recalibratable)} models; a {family} model "
            "is kept, and updated by a refit on development + new data (a training run)"
        ),
        events=events,
    )


def describe_tests(tests: list[LikelihoodRatioTest]) -> str:
    """'logistic recalibration vs keep: p = 0.001; ...' in the order the tests ran."""
    return "; ".join(
        f"{t.extensive.replace('_', ' ')} vs {t.simpler.replace('_', ' ')}: p = {t.p_value:.3g}"
        for t in tests
    )


def _fmt(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:.3f}"
