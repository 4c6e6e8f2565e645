"""Minimum sample size for developing a binary-outcome prediction model (Riley et al.).

The three criteria of Riley et al. (Stat Med 2019;38:1276-96; BMJ 2020;368:m441), as the
pmsampsize package computes them:

1. expected uniform shrinkage of predictor effects >= S (default 0.9):
   n = P / ((S - 1) ln(1 - R2_CS / S));
2. apparent and adjusted Nagelkerke R2 differ by <= 0.05: criterion 1 with
   S = R2_CS / (R2_CS + 0.05 max(R2_CS));
3. the overall risk is estimated within +-0.05: n = (1.96 / 0.05)^2 phi (1 - phi).

R2_CS is the anticipated Cox-Snell R2. When only a C statistic is known, it is derived as in
Riley, Van Calster & Collins (Stat Med 2021;40:859-64): a binormal linear predictor with
that C, under which the true log-odds are linear in it; here the expected log-likelihood is
integrated numerically instead of simulated, so the result is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_expit
from scipy.stats import norm


def max_cox_snell_r2(prevalence: float) -> float:
    """The largest Cox-Snell R2 a model can reach at this outcome prevalence."""
    ln_null = prevalence * math.log(prevalence) + (1 - prevalence) * math.log(1 - prevalence)
    return 1 - math.exp(2 * ln_null)


def cox_snell_r2_from_c(c_statistic: float, prevalence: float, *, nodes: int = 200) -> float:
    """Anticipated Cox-Snell R2 of a model with this C statistic at this prevalence.

    Linear predictor ~ N(0, 1) in non-events and N(mu, 1) in events, mu = sqrt(2) z_C, so
    the log-odds are logit(phi) + mu x - mu^2 / 2. R2_CS = 1 - exp(-2 (E[ll] - ll_null)) per
    patient, E[ll] by Gauss-Hermite quadrature.
    """
    if not 0.5 < c_statistic < 1:
        raise ValueError(f"c_statistic must be between 0.5 and 1, got {c_statistic}")
    mu = math.sqrt(2) * norm.ppf(c_statistic)
    offset = math.log(prevalence / (1 - prevalence)) - mu**2 / 2
    points, weights = np.polynomial.hermite_e.hermegauss(nodes)
    weights = weights / weights.sum()
    events = np.sum(weights * log_expit(offset + mu * (points + mu)))
    non_events = np.sum(weights * log_expit(-(offset + mu * points)))
    expected_ll = prevalence * events + (1 - prevalence) * non_events
    ln_null = prevalence * math.log(prevalence) + (1 - prevalence) * math.log(1 - prevalence)
    return float(1 - math.exp(-2 * (expected_ll - ln_null)))


def _shrinkage_n(parameters: int, r2_cs: float, shrinkage: float) -> int:
    return math.ceil(parameters / ((shrinkage - 1) * math.log(1 - r2_cs / shrinkage)))


@dataclass(frozen=True)
class SampleSize:
    parameters: int
    prevalence: float
    cox_snell_r2: float
    shrinkage_target: float
    n_shrinkage: int  # criterion 1
    n_optimism: int  # criterion 2
    n_overall_risk: int  # criterion 3
    required_n: int
    required_events: float
    events_per_parameter: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def riley_sample_size(
    *,
    parameters: int,
    prevalence: float,
    cox_snell_r2: float | None = None,
    c_statistic: float | None = None,
    shrinkage: float = 0.9,
) -> SampleSize:
    """Minimum development sample size for a logistic model with `parameters` candidate
    predictor parameters; give the anticipated Cox-Snell R2 or a C statistic."""
    if (cox_snell_r2 is None) == (c_statistic is None):
        raise ValueError("give exactly one of cox_snell_r2 and c_statistic")
    if cox_snell_r2 is None:
        assert c_statistic is not None
        cox_snell_r2 = cox_snell_r2_from_c(c_statistic, prevalence)
    r2 = cox_snell_r2
    maximum = max_cox_snell_r2(prevalence)
    if not 0 < r2 < min(shrinkage, maximum):
        raise ValueError(
            f"Cox-Snell R2 {r2:.4f} must be between 0 and {min(shrinkage, maximum):.4f}"
        )
    n1 = _shrinkage_n(parameters, r2, shrinkage)
    small_optimism = r2 / (r2 + 0.05 * maximum)
    n2 = _shrinkage_n(parameters, r2, small_optimism)
    n3 = math.ceil((1.96 / 0.05) ** 2 * prevalence * (1 - prevalence))
    required = max(n1, n2, n3)
    events = required * prevalence
    return SampleSize(
        parameters=parameters,
        prevalence=prevalence,
        cox_snell_r2=r2,
        shrinkage_target=shrinkage,
        n_shrinkage=n1,
        n_optimism=n2,
        n_overall_risk=n3,
        required_n=required,
        required_events=events,
        events_per_parameter=events / parameters,
    )


def expected_shrinkage(*, parameters: int, n: int, cox_snell_r2: float) -> float:
    """Van Houwelingen's heuristic shrinkage factor a sample of n would give: the S in (R2_CS, 1)
    with n = P / ((S - 1) ln(1 - R2_CS / S)) (criterion 1 read the other way round).

    (S - 1) ln(1 - R2_CS / S) falls from +inf at S = R2_CS to 0 at S = 1, so the root is unique
    and bracketed. A model with no explained variation (R2_CS <= 0, e.g. C = 0.5) has every
    effect pure noise: its expected shrinkage is 0.
    """
    if cox_snell_r2 <= 0:
        return 0.0

    def gap(s: float) -> float:
        return n * (s - 1) * math.log1p(-cox_snell_r2 / s) - parameters

    low = cox_snell_r2 * (1 + 1e-12)
    high = 1.0 - 1e-15
    if gap(high) >= 0:  # so much data that no shrinkage is expected
        return high
    if gap(low) <= 0:  # cannot happen for finite n; guard against rounding
        return low
    return float(brentq(gap, low, high, xtol=1e-14, rtol=1e-12))
