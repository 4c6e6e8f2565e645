"""Prediction instability (Riley & Collins 2023): refits on bootstrap resamples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from stroke_risk.evaluation.instability import instability_summary, per_patient_instability
from stroke_risk.models.bootstrap_refits import bootstrap_indices, bootstrap_predictions
from stroke_risk.reports.instability_plot import instability_png, read_instability_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FixedRisk(ClassifierMixin, BaseEstimator):
    """A 'model' whose predictions ignore the training data: no instability at all."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        risk = expit(np.asarray(X["x"], dtype=float) - 2)
        return np.c_[1 - risk, risk]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=300)})
    y = (rng.random(300) < expit(X["x"].to_numpy() - 2)).astype(int)
    return X, y


def test_a_model_that_ignores_its_training_data_has_zero_instability(data):
    X, y = data
    original, bootstrap = bootstrap_predictions(FixedRisk, X, y, n_bootstrap=20, seed=0)
    summary = instability_summary(original, bootstrap)
    assert summary["mape"] == 0 and summary["mape_max"] == 0
    assert summary["range95_width_median"] == 0 and summary["range95_width_p90"] == 0
    table = per_patient_instability(original, bootstrap)
    assert (table["bootstrap_low"] == table["original"]).all()


def test_refits_are_fits_on_the_resampled_rows(data):
    X, y = data
    original, bootstrap = bootstrap_predictions(
        LogisticRegression, X, y, n_bootstrap=6, seed=3, n_jobs=1
    )
    assert original == pytest.approx(LogisticRegression().fit(X, y).predict_proba(X)[:, 1])
    for rows, predictions in zip(
        bootstrap_indices(len(y), n_bootstrap=6, seed=3), bootstrap, strict=True
    ):
        refit = LogisticRegression().fit(X.iloc[rows], y[rows])
        assert predictions == pytest.approx(refit.predict_proba(X)[:, 1])
    assert bootstrap.shape == (6, len(y))


@pytest.mark.integration  # joblib's process pool
def test_refits_ignore_n_jobs(data):
    X, y = data
    _, serial = bootstrap_predictions(LogisticRegression, X, y, n_bootstrap=6, seed=3, n_jobs=1)
    _, in_parallel = bootstrap_predictions(
        LogisticRegression, X, y, n_bootstrap=6, seed=3, n_jobs=2
    )
    assert np.array_equal(serial, in_parallel)


def test_mape_is_the_mean_absolute_difference_per_patient_then_over_patients():
    original = np.array([0.1, 0.2, 0.5])
    bootstrap = np.array([[0.1, 0.3, 0.5], [0.3, 0.2, 0.2], [0.1, 0.1, 0.5]])
    table = per_patient_instability(original, bootstrap)
    expected = [0.2 / 3, 0.2 / 3, 0.1]
    assert table["mean_absolute_error"].to_numpy() == pytest.approx(expected)
    assert instability_summary(original, bootstrap)["mape"] == pytest.approx(np.mean(expected))
    assert instability_summary(original, bootstrap)["mape_max"] == pytest.approx(0.1)


def test_a_smaller_sample_is_less_stable(data):
    """Riley & Collins' point: fewer rows, wider spread of refitted predictions."""
    X, y = data
    few = bootstrap_predictions(LogisticRegression, X.head(100), y[:100], n_bootstrap=30, seed=1)
    many = bootstrap_predictions(LogisticRegression, X, y, n_bootstrap=30, seed=1)
    assert instability_summary(*few)["mape"] > instability_summary(*many)["mape"] > 0


def test_instability_plot_is_a_deterministic_png_of_its_data(tmp_path, data):
    X, y = data
    table = per_patient_instability(
        *bootstrap_predictions(LogisticRegression, X, y, n_bootstrap=10, seed=0)
    )
    path = tmp_path / "instability.csv"
    table.to_csv(path, index=False)
    read = read_instability_table(str(path))
    first = instability_png(read, mape=0.01)
    assert first.startswith(PNG_SIGNATURE) and first == instability_png(read, mape=0.01)
    assert first != instability_png(read.assign(bootstrap_high=read["original"]), mape=0.01)
    table.drop(columns="bootstrap_high").to_csv(path, index=False)
    with pytest.raises(ValueError, match="bootstrap_high"):
        read_instability_table(str(path))
