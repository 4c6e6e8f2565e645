"""Tuning has no hidden state: in memory it is a pure function; a stored study is explicit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stroke_risk.data.features import FeatureConfig
from stroke_risk.models.tuning import (
    CVSettings,
    NestedCVSettings,
    StudySpec,
    TuningError,
    nested_cross_validate,
    nested_cv_report,
    nested_tuning_cv,
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


def recording_search(X, y):
    """A search that 'selects' the rows it was shown, so the test can see them."""
    return {"seen": sorted(int(label) for label in X.index)}, 0.5


def prior_pipeline(params):
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="prior")


def test_nested_cv_never_shows_the_outer_held_out_rows_to_the_search():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=200)}, index=np.arange(1000, 1200))
    y = (rng.random(200) < 0.2).astype(int)
    result = nested_cross_validate(
        X, y, search=recording_search, make_pipeline=prior_pipeline, outer_splits=4, seed=1
    )
    assert len(result.folds) == 4
    held_out_union: set[int] = set()
    for fold in result.folds:
        held_out = {int(X.index[row]) for row in fold.held_out_rows}
        seen = set(fold.selected_params["seen"])
        assert seen.isdisjoint(held_out)
        assert seen | held_out == set(X.index)
        held_out_union |= held_out
    assert held_out_union == set(X.index)  # every row is held out exactly once overall
    assert sum(len(fold.held_out_rows) for fold in result.folds) == len(X)


NESTED = NestedCVSettings(outer_splits=3, inner_splits=2, inner_repeats=1, seed=0)


@pytest.mark.integration  # joblib's process pool
def test_nested_tuning_cv_ignores_n_jobs(small):
    X, y = small
    one = nested_tuning_cv(spec(), X, y, settings=NESTED, n_trials=2, n_jobs=1)
    assert nested_tuning_cv(spec(), X, y, settings=NESTED, n_trials=2, n_jobs=2) == one


def test_nested_tuning_cv_reruns_the_search_per_outer_fold(small):
    X, y = small
    one = nested_tuning_cv(spec(), X, y, settings=NESTED, n_trials=2, n_jobs=1)
    # The same seeded search on each outer-training part: same candidates, its own scores.
    assert len({fold.inner_score for fold in one.folds}) == 3
    assert all(0.01 <= fold.selected_params["C"] <= 1.0 for fold in one.folds)
    report = nested_cv_report(one, family="logreg", metric="roc_auc", settings=NESTED, n_trials=2)
    aucs = [fold["roc_auc"] for fold in report["outer_folds"]]
    assert report["nested"]["roc_auc"] == pytest.approx(np.mean(aucs), abs=1e-6)
    assert report["nested"]["roc_auc_std"] == pytest.approx(np.std(aucs, ddof=1), abs=1e-6)
    assert "3 stratified outer folds" in report["method"]


def test_nested_cv_removes_selection_optimism_on_noise():
    """Labels independent of the features: the best of many searched feature subsets looks
    better than chance on the folds that chose it, but not on the held-out outer folds."""
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(300, 12)), columns=[f"f{i}" for i in range(12)])
    y = (rng.random(300) < 0.3).astype(int)
    subsets = [list(rng.choice(12, size=2, replace=False)) for _ in range(30)]

    def subset_pipeline(params):
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        columns = [f"f{i}" for i in params["subset"]]
        return make_pipeline(
            ColumnTransformer([("x", "passthrough", columns)]), LogisticRegression()
        )

    def best_subset(X_fit, y_fit):
        # Each subset's 3-fold cross-validated AUC of a linear score fitted on the fold's
        # training rows. Least squares, not LogisticRegression: on two features both give the
        # same direction (the same selected scores on this data) at a twentieth of the cost of
        # 450 fits per run.
        from scipy.stats import rankdata
        from sklearn.model_selection import StratifiedKFold

        folds = list(StratifiedKFold(n_splits=3).split(X_fit, y_fit))
        values, labels = X_fit.to_numpy(), np.asarray(y_fit)

        def auc(outcome, score):  # Mann-Whitney U / (n1 n0)
            positive = outcome == 1
            n1, n0 = positive.sum(), (~positive).sum()
            return (rankdata(score)[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)

        def cv_auc(subset):
            columns = values[:, [X_fit.columns.get_loc(f"f{i}") for i in subset]]
            scores = []
            for train, test in folds:
                design = np.column_stack([np.ones(len(train)), columns[train]])
                weights = np.linalg.lstsq(design, labels[train], rcond=None)[0]
                scores.append(auc(labels[test], columns[test] @ weights[1:]))
            return np.mean(scores)

        score, chosen = max(((cv_auc(s), s) for s in subsets), key=lambda pair: pair[0])
        return {"subset": [int(i) for i in chosen]}, float(score)

    result = nested_cross_validate(
        X, y, search=best_subset, make_pipeline=subset_pipeline, outer_splits=5, seed=0
    )
    selected = np.mean([fold.inner_score for fold in result.folds])
    assert selected > 0.55  # the best of 30 on its own folds: optimistic
    assert abs(result.mean("roc_auc") - 0.5) < 0.06  # held out: chance, as it should be
    assert selected - result.mean("roc_auc") > 0.05


def test_cv_result_std_is_the_sample_standard_deviation():
    from stroke_risk.models.pipelines import CVResult

    scores = [{"roc_auc": value} for value in (0.80, 0.82, 0.87)]
    result = CVResult(scores, np.zeros(3))
    assert result.std("roc_auc") == pytest.approx(np.std([0.80, 0.82, 0.87], ddof=1))
    assert result.std("roc_auc") > np.std([0.80, 0.82, 0.87])
