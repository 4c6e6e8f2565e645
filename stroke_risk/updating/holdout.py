"""The held-out evidence of an update: what the release gates read for a recalibrated model.

The change-control plan holds out a stratified part of the outcome labels (protocol.py,
``held_out_split``); neither the closed test nor the recalibration fit saw it. The release
gates (stroke_risk/release/gates.py) judge an update there, in the shape evaluate writes for
a trained model, so one gate function reads either:

- ``reports/outcomes/update_holdout.json``: ``test`` (every metric at the threshold with a
  95 % patient-bootstrap CI), ``calibration.test`` (profile-likelihood intercept and slope),
  ``threshold``, plus what was judged (``recalibration``, labels, the base model);
- one row per held-out patient, ``stroke`` (the label), ``probability`` (the update's) and
  ``base_probability`` (the deployed model's, as logged when it scored the patient), so the
  not-worse-than-production gate pairs the two models on the same patients. These are patient
  data and are never written: `make release MODEL=updated` recomputes them from the outcome
  labels where they were collected (``decision_and_evidence``, the stage's own sequence) and
  checks the figures it gets are the ones the stage wrote.

Which update is judged. The plan re-estimates an accepted method on every label (protocol.py
``decide`` step 4), so the released coefficients have seen the held-out part and figures of
*that* model there would not be held-out figures. The gates therefore judge the update fitted
on the updating part only (the fit the plan accepted), on the labels it never saw: the
split-sample estimate of the updating procedure, which is the conventional and slightly
pessimistic estimate for the model refitted on all data (Steyerberg et al. 2001, J Clin
Epidemiol 54:774; Steyerberg, *Clinical Prediction Models* 2nd ed. 2019, ch. 17 and 20). The
release record names both fits. Its threshold is the base threshold mapped through that fit,
as the stage maps the released one, so both flag the patients the base model flagged.

Pure functions of numpy arrays: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stroke_risk.evaluation.calibration import calibration_intercept_slope
from stroke_risk.evaluation.metrics import metrics_with_intervals
from stroke_risk.updating.protocol import (
    Decision,
    Protocol,
    Recalibration,
    decide_for_family,
    held_out_split,
)
from stroke_risk.updating.recalibrated import RECALIBRATABLE_FAMILIES, recalibrated_threshold

# The per-patient columns of the held-out rows; `stroke` and `probability` are the columns
# of reports/test_predictions.csv, so the comparison code reads both files alike.
LABEL, PROBABILITY, BASE_PROBABILITY = "stroke", "probability", "base_probability"
HOLDOUT_COLUMNS = (LABEL, PROBABILITY, BASE_PROBABILITY)
SPLIT_NAME = "held-out outcome labels"


@dataclass(frozen=True)
class HeldOutEvidence:
    """The update judged on the held-out labels (None of it exists when the model is kept)."""

    document: dict[str, Any]  # update_holdout.json
    predictions: pd.DataFrame  # per held-out patient (never written)


def no_evidence(decision: Decision) -> HeldOutEvidence:
    """What the stage writes when the plan kept the model: nothing to release, and why."""
    return HeldOutEvidence(
        document={"available": False, "method": decision.method, "reason": decision.reason},
        predictions=pd.DataFrame({column: [] for column in HOLDOUT_COLUMNS}),
    )


def held_out_evidence(
    y_true: np.ndarray,
    base_probability: np.ndarray,
    decision: Decision,
    protocol: Protocol,
    *,
    base_threshold: float,
    base_model_version: str,
    n_resamples: int,
    seed: int,
) -> HeldOutEvidence:
    """The accepted update (fitted without the held-out labels) scored on the held-out part.

    `y_true` and `base_probability` are the labels decide() was given, in the same order, so
    held_out_split returns the rows decide() held out. A kept model has no evidence.
    """
    if not decision.updated or decision.closed_test is None or decision.acceptance is None:
        return no_evidence(decision)
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(base_probability, dtype=float)
    updating, held = held_out_split(y, fraction=protocol.held_out_fraction, seed=protocol.seed)
    judged: Recalibration = decision.closed_test.fits[decision.method]
    y_held, base_held = y[held], p[held]
    updated_held = judged.probability(base_held)
    threshold = recalibrated_threshold(base_threshold, judged)
    document = {
        "available": True,
        "split": SPLIT_NAME,
        "method": decision.method,
        "labels": int(len(held)),
        "events": int(y_held.sum()),
        "fitted_on_labels": int(len(updating)),
        "judged_recalibration": {"intercept": judged.intercept, "slope": judged.slope},
        "released_recalibration": {
            "intercept": decision.recalibration.intercept,
            "slope": decision.recalibration.slope,
            "fitted_on_labels": int(len(y)),
        },
        "base": {"model_version": base_model_version, "threshold": base_threshold},
        "threshold": {"value": threshold, "policy": "base threshold mapped by the update"},
        "bootstrap": {"n_resamples": n_resamples, "seed": seed},
        "test": metrics_with_intervals(
            y_held, updated_held, threshold, n_resamples=n_resamples, seed=seed
        ),
        "calibration": {"test": calibration_intercept_slope(y_held, updated_held)},
    }
    predictions = pd.DataFrame(
        {LABEL: y_held, PROBABILITY: updated_held, BASE_PROBABILITY: base_held}
    )
    return HeldOutEvidence(document=document, predictions=predictions)


def decision_and_evidence(
    labels: np.ndarray,
    probabilities: np.ndarray,
    base_metadata: dict[str, Any],
    protocol: Protocol,
    *,
    base_model_version: str,
    n_resamples: int,
    seed: int,
) -> tuple[Decision, HeldOutEvidence]:
    """The plan's decision on the base model's labelled predictions, and its held-out
    evidence: the update stage runs this, and the release command reruns it (deterministic)
    for the per-patient rows it never stores."""
    decision = decide_for_family(
        labels,
        probabilities,
        protocol,
        family=base_metadata["model_family"],
        recalibratable=RECALIBRATABLE_FAMILIES,
        expected_prevalence=base_metadata.get("training_prevalence"),
    )
    evidence = held_out_evidence(
        labels,
        probabilities,
        decision,
        protocol,
        base_threshold=base_metadata["decision_threshold"],
        base_model_version=base_model_version,
        n_resamples=n_resamples,
        seed=seed,
    )
    return decision, evidence
