"""Explanations of the trained model: exact, plausible and fast enough to serve."""

from __future__ import annotations

import time

import numpy as np

from stroke_risk.models.explain import explain, explainer_for, model_logit, top_risk_factors
from tests.model.conftest import patient


def test_trained_model_explanations_sum_to_its_logit(trained_model, brain_frame):
    rows = brain_frame.drop(columns="stroke")
    base_value, contributions = explain(trained_model, rows)
    total = base_value + contributions.sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, model_logit(trained_model, rows), rtol=0, atol=1e-6)


def test_age_contribution_grows_with_age(trained_model, adults):
    _, younger = explain(trained_model, adults)
    _, older = explain(trained_model, adults.assign(age=adults["age"] + 10))
    assert np.mean(older["age"] >= younger["age"]) >= 0.8
    assert np.mean(older["age"] - younger["age"]) > 0


def test_elderly_high_risk_patient_is_explained_by_clinical_fields(trained_model):
    row = patient(age=82.0, hypertension=1, heart_disease=1, avg_glucose_level=230.0)
    base_value, contributions = explain(trained_model, row)
    factors = top_risk_factors(base_value, contributions.iloc[0], row.iloc[0], k=3)
    assert factors[0]["contribution"] > 0
    clinical = {"age", "hypertension", "heart_disease", "avg_glucose_level"}
    assert factors[0]["feature"] in clinical
    assert "age" in {f["feature"] for f in factors}
    assert next(f for f in factors if f["feature"] == "age")["value"] == 82.0


def test_residence_type_barely_contributes(trained_model, adults):
    _, contributions = explain(trained_model, adults)
    assert contributions["Residence_type"].abs().mean() < 0.1


def _median_ratio(function, reference, repeats: int = 60) -> float:
    """Median seconds of function over median seconds of reference, calls interleaved so
    both see the same load on a shared machine."""
    function(), reference()  # warm-up: first-call allocations and lazy imports
    timings: dict[object, list[float]] = {function: [], reference: []}
    for _ in range(repeats):
        for call in (function, reference):
            start = time.perf_counter()
            call()
            timings[call].append(time.perf_counter() - start)
    return float(np.median(timings[function]) / np.median(timings[reference]))


def test_explaining_one_prediction_costs_about_a_prediction(trained_model):
    """Relative to predicting the same row in the same run, so a busy machine cannot fail
    it (figures live in benchmarks/serving.py). On one row, explaining costs about as much
    as predicting (logistic regression: ~1.1x; trees: less)."""
    explainer = explainer_for(trained_model)
    row = patient(age=70.0, hypertension=1)
    matrix = explainer.transform.transform(row)
    model = trained_model.steps[-1][1]
    assert (
        _median_ratio(lambda: explainer.explain_matrix(matrix), lambda: model.predict_proba(matrix))
        < 5
    )
    # The whole path, dominated by sklearn's per-call transform overhead, as predicting is.
    assert (
        _median_ratio(lambda: explainer.explain(row), lambda: trained_model.predict_proba(row)) < 3
    )
