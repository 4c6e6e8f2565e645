"""An accepted recalibration as a fitted pipeline of the same family as the deployed model.

It therefore gets the same artifacts as a trained model (pickled pipeline, data-only serving
artifact with its probe proof, risk factors from the same coefficient tables).

For a logistic regression, new log-odds a + b * (w.x + c) is again a logistic regression
with coefficients b * w and intercept a + b * c: the recalibrated model is exact, not a
wrapper, and every fast path and explainer that reads a LogisticRegression reads it.
Other families have no such closed form; the plan allows them only ``keep`` (their update
is a refit: a training run).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from scipy.special import expit

from stroke_risk.log_odds import logit
from stroke_risk.updating.protocol import Recalibration

RECALIBRATABLE_FAMILIES = ("logreg",)


class NotRecalibratable(ValueError):
    """The pipeline's estimator is not a logistic regression."""


def recalibrated_pipeline(pipeline: Any, recalibration: Recalibration) -> Any:
    """A copy of the fitted pipeline whose probabilities are recalibration's of the original."""
    from sklearn.linear_model import LogisticRegression

    updated = copy.deepcopy(pipeline)
    estimator = updated.steps[-1][1]
    if type(estimator) is not LogisticRegression:
        raise NotRecalibratable(
            f"a {type(estimator).__name__} cannot be recalibrated in place; only keep or refit"
        )
    estimator.coef_ = recalibration.slope * estimator.coef_
    estimator.intercept_ = recalibration.intercept + recalibration.slope * estimator.intercept_
    return updated


def recalibrated_threshold(threshold: float, recalibration: Recalibration) -> float:
    """The threshold on the new scale that flags exactly the patients the old one did.

    A recalibration with a positive slope keeps the ranking, so the decision rule (the
    clinical policy the threshold encodes) is unchanged; only the probabilities are
    corrected. Choosing a new threshold is a change of policy, not of calibration.
    """
    return float(
        expit(
            recalibration.intercept
            + recalibration.slope * float(logit(np.asarray(threshold), floor=0.0))
        )
    )
