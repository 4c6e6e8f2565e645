import numpy as np
import optuna
import pandas as pd
import pytest

from stroke_risk.data.features import FeatureConfig
from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.models.families import FAMILIES
from stroke_risk.models.pipelines import (
    build_model_pipeline,
    build_serving_pipeline,
    cross_validate_pipeline,
    suggest_params,
)
from stroke_risk.models.tuning import study_name

# Each family's small configuration (its record in stroke_risk.models.families).
SMALL_PARAMS = {name: dict(family.small_params) for name, family in FAMILIES.items()}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("feature_set", ["compact", "full"])
def test_each_family_fits_and_serves_raw_fields(featurized, brain_frame, family, feature_set):
    X, y = featurized
    if feature_set == "full":
        # age bands cannot be monotone-constrained (tests/code/test_glassbox.py)
        feature_set = FAMILIES[family].widest_feature_set
    params = {**SMALL_PARAMS[family], "feature_set": feature_set}
    fitted = build_model_pipeline(family, params, feature_config=FeatureConfig(), seed=0).fit(X, y)
    serving = build_serving_pipeline(fitted, FeatureConfig())
    raw = brain_frame[list(FEATURE_NAMES)].head(200)
    np.testing.assert_allclose(
        serving.predict_proba(raw)[:, 1], fitted.predict_proba(X.head(200))[:, 1], atol=1e-12
    )


def test_categories_absent_from_training_are_scored(featurized, brain_frame):
    X, y = featurized
    params = {**SMALL_PARAMS["logreg"], "feature_set": "full"}
    fitted = build_model_pipeline("logreg", params, feature_config=FeatureConfig(), seed=0)
    serving = build_serving_pipeline(fitted.fit(X, y), FeatureConfig())
    row = brain_frame[list(FEATURE_NAMES)].head(1).copy()
    row["gender"], row["work_type"], row["bmi"] = "Other", "Never_worked", np.nan
    probability = serving.predict_proba(row)[0, 1]
    assert 0.0 < probability < 1.0


def test_unknown_family_and_feature_set_are_rejected():
    with pytest.raises(ValueError, match="unknown model family"):
        build_model_pipeline("svm", {}, feature_config=FeatureConfig(), seed=0)
    with pytest.raises(ValueError, match="unknown feature_set"):
        build_model_pipeline(
            "logreg", {"feature_set": "huge"}, feature_config=FeatureConfig(), seed=0
        )


def small_cv(featurized, **kwargs):
    X, y = featurized

    def make():
        return build_model_pipeline(
            "logreg", {"C": 0.1, "feature_set": "compact"}, feature_config=FeatureConfig(), seed=0
        )

    return cross_validate_pipeline(
        make, X.head(1500), y[:1500], n_splits=3, n_repeats=2, seed=1, **kwargs
    )


def test_cross_validation_is_deterministic_and_covers_every_row(featurized):
    first = small_cv(featurized)
    assert len(first.fold_scores) == 6
    assert np.isfinite(first.oof_probability).all() and len(first.oof_probability) == 1500
    np.testing.assert_array_equal(first.oof_probability, small_cv(featurized).oof_probability)
    assert 0.6 < first.mean("roc_auc") < 1.0


@pytest.mark.integration  # joblib's process pool
def test_cross_validation_in_worker_processes_gives_the_same_predictions(featurized):
    np.testing.assert_array_equal(
        small_cv(featurized, n_jobs=2).oof_probability, small_cv(featurized).oof_probability
    )


def test_suggest_params_reads_the_config_space():
    space = {
        "C": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
        "depth": {"type": "int", "low": 1, "high": 3},
        "feature_set": {"type": "categorical", "choices": ["compact", "full"]},
    }
    trial = optuna.trial.FixedTrial({"C": 0.5, "depth": 2, "feature_set": "full"})
    assert suggest_params(trial, space) == {"C": 0.5, "depth": 2, "feature_set": "full"}
    with pytest.raises(ValueError, match="unknown type"):
        suggest_params(trial, {"x": {"type": "complex"}})


def test_study_name_is_stable_and_sensitive():
    a = study_name("logreg", {"cv": {"n_splits": 5}, "data": "abc"})
    assert a == study_name("logreg", {"data": "abc", "cv": {"n_splits": 5}})
    assert a != study_name("logreg", {"cv": {"n_splits": 4}, "data": "abc"})


def test_prepared_frame_round_trip(tmp_path, brain_frame):
    from stroke_risk.data.prepared import read_prepared
    from stroke_risk.io import write_csv

    frame = brain_frame.head(30).copy()
    frame.loc[0, "bmi"] = np.nan
    write_csv(tmp_path / "x.csv", frame)
    pd.testing.assert_frame_equal(read_prepared(str(tmp_path / "x.csv")), frame, check_dtype=False)
