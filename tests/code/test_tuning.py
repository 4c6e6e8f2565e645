"""Tuning has no hidden state: in memory it is a pure function; a stored study is explicit."""

from __future__ import annotations

import pytest

from stroke_risk.features import FeatureConfig
from stroke_risk.tuning import (
    CVSettings,
    StudySpec,
    TuningError,
    open_study,
    redact_storage,
    run_study,
    study_name,
)


@pytest.fixture()
def small(featurized):
    X, y = featurized
    return X.head(600), y[:600]


def spec(**changes) -> StudySpec:
    base = dict(
        family="logreg",
        fixed_params={"max_iter": 1000},
        search_space={"C": {"type": "float", "low": 0.01, "high": 1.0, "log": True}},
        cv=CVSettings(n_splits=3, n_repeats=1, seed=0),
        feature_config=FeatureConfig(),
        metric="roc_auc",
        sampler_seed=0,
        model_seed=0,
        train_sha256="abc",
        code_sha256="def",
    )
    return StudySpec(**{**base, **changes})


def test_in_memory_study_is_deterministic(small):
    X, y = small
    first = run_study(spec(), X, y, n_trials=3, n_jobs=1, show_progress_bar=False)
    again = run_study(spec(), X, y, n_trials=3, n_jobs=1, show_progress_bar=False)
    assert first == again
    assert first.storage == "in-memory" and first.trials_used == [0, 1, 2]


@pytest.mark.integration
def test_a_larger_stored_study_does_not_leak_into_a_smaller_budget(small, tmp_path):
    X, y = small
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    big = run_study(spec(), X, y, n_trials=5, n_jobs=1, storage=storage, show_progress_bar=False)
    assert big.trials_used == [0, 1, 2, 3, 4]
    small_budget = run_study(
        spec(), X, y, n_trials=2, n_jobs=1, storage=storage, show_progress_bar=False
    )
    in_memory = run_study(spec(), X, y, n_trials=2, n_jobs=1, show_progress_bar=False)
    assert small_budget.trials_used == [0, 1]
    assert small_budget.best_params == in_memory.best_params


@pytest.mark.integration
def test_a_resumed_study_does_not_repeat_its_first_trials(small, tmp_path):
    X, y = small
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_study(spec(), X, y, n_trials=2, n_jobs=1, storage=storage, show_progress_bar=False)
    run_study(spec(), X, y, n_trials=4, n_jobs=1, storage=storage, show_progress_bar=False)
    study = open_study(
        spec(), storage=storage, name=study_name("logreg", spec().fingerprint()), sampler_seed=0
    )
    values = [trial.params["C"] for trial in study.trials]
    assert len(values) == 4 and len(set(values)) == 4


@pytest.mark.integration
def test_changed_code_or_space_never_reuses_stored_scores(tmp_path):
    assert study_name("logreg", spec().fingerprint()) != study_name(
        "logreg", spec(code_sha256="changed").fingerprint()
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    open_study(spec(), storage=storage, name="shared", sampler_seed=0)
    other_space = {"C": {"type": "float", "low": 0.1, "high": 2.0}}
    with pytest.raises(TuningError, match="different search_space"):
        open_study(spec(search_space=other_space), storage=storage, name="shared", sampler_seed=0)


def test_unreachable_storage_is_one_line_without_the_password():
    url = "postgresql+psycopg://alice:s3cret@127.0.0.1:1/optuna"
    with pytest.raises(TuningError) as caught:
        open_study(spec(), storage=url, name="x", sampler_seed=0)
    message = str(caught.value)
    assert "s3cret" not in message and "127.0.0.1:1" in message and "\n" not in message
    assert "s3cret" not in redact_storage(url)
