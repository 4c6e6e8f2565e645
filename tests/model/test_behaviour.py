"""Behavioural tests of the trained model: direction, invariance, minimum functionality.

They run on models/model.joblib, whatever family and feature set the tuner picked, so an
experiment that produces a model with implausible behaviour fails here.
"""

from __future__ import annotations

import numpy as np

from tests.model.conftest import patient


def probability(model, frame) -> np.ndarray:
    return model.predict_proba(frame)[:, 1]


def test_older_age_raises_risk(trained_model, adults):
    younger = probability(trained_model, adults)
    older = probability(trained_model, adults.assign(age=adults["age"] + 10))
    assert np.mean(older > younger) >= 0.9
    assert np.median(older / younger) > 1.2


def test_hypertension_raises_risk(trained_model, adults):
    without = probability(trained_model, adults.assign(hypertension=0))
    with_hypertension = probability(trained_model, adults.assign(hypertension=1))
    assert np.mean(with_hypertension >= without) >= 0.9
    assert np.mean(with_hypertension - without) > 0


def test_heart_disease_raises_risk(trained_model, adults):
    without = probability(trained_model, adults.assign(heart_disease=0))
    with_disease = probability(trained_model, adults.assign(heart_disease=1))
    assert np.mean(with_disease >= without) >= 0.9
    assert np.mean(with_disease - without) > 0


def test_residence_type_swap_changes_little(trained_model, adults):
    # Where a patient lives is not a plausible stroke mechanism in this data.
    swapped = adults.assign(
        Residence_type=adults["Residence_type"].map({"Urban": "Rural", "Rural": "Urban"})
    )
    change = np.abs(probability(trained_model, swapped) - probability(trained_model, adults))
    assert change.mean() < 0.005
    assert change.max() < 0.03


def test_missing_bmi_is_scored_like_a_typical_bmi(trained_model):
    missing = probability(trained_model, patient(bmi=np.nan))[0]
    typical = probability(trained_model, patient(bmi=28.0))[0]
    assert np.isfinite(missing)
    assert abs(missing - typical) < 0.02


def test_high_risk_profile_is_flagged_and_low_risk_is_not(trained_model, model_metadata):
    threshold = model_metadata["decision_threshold"]
    high = patient(
        age=80.0,
        hypertension=1,
        heart_disease=1,
        avg_glucose_level=230.0,
        bmi=32.0,
        smoking_status="formerly smoked",
    )
    low = patient(age=25.0, ever_married="No", avg_glucose_level=85.0, bmi=22.0)
    high_risk = probability(trained_model, high)[0]
    low_risk = probability(trained_model, low)[0]
    assert high_risk >= threshold > low_risk
    assert high_risk > 10 * low_risk
    assert high_risk > 2 * model_metadata["training_prevalence"]
