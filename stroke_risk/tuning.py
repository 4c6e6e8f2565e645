"""Optuna study over a model family's search space, scored by repeated stratified CV."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from stroke_risk.features import FeatureConfig
from stroke_risk.modeling import (
    CVResult,
    build_model_pipeline,
    cross_validate_pipeline,
    suggest_params,
)

# Metrics where lower is better; everything else is maximised.
MINIMISED_METRICS = {"brier"}


@dataclass(frozen=True)
class CVSettings:
    n_splits: int
    n_repeats: int
    seed: int


def study_name(family: str, fingerprint: Mapping[str, Any]) -> str:
    """Stable name: same family, space, CV settings and data -> same study, so it resumes.

    Anything that changes what a trial means is in the fingerprint, so a changed setting
    starts a fresh study instead of mixing incomparable trials.
    """
    digest = hashlib.sha256(
        json.dumps(fingerprint, sort_keys=True, default=str).encode()
    ).hexdigest()
    return f"stroke-{family}-{digest[:12]}"


def evaluate_params(
    family: str,
    params: Mapping[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    cv: CVSettings,
    feature_config: FeatureConfig,
    seed: int,
    n_jobs: int = 1,
) -> CVResult:
    """Cross-validate one parameter set of a family on the training split."""
    return cross_validate_pipeline(
        lambda: build_model_pipeline(family, params, feature_config=feature_config, seed=seed),
        X,
        y,
        n_splits=cv.n_splits,
        n_repeats=cv.n_repeats,
        seed=cv.seed,
        n_jobs=n_jobs,
    )


def run_study(
    *,
    family: str,
    fixed_params: Mapping[str, Any],
    search_space: Mapping[str, Mapping[str, Any]],
    X: pd.DataFrame,
    y: np.ndarray,
    cv: CVSettings,
    feature_config: FeatureConfig,
    metric: str,
    n_trials: int,
    sampler_seed: int,
    model_seed: int,
    n_jobs: int,
    storage: str,
    name: str,
    show_progress_bar: bool = True,
) -> Any:
    """Create or resume the study and run trials until it has n_trials complete ones."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction: Literal["minimize", "maximize"] = (
        "minimize" if metric in MINIMISED_METRICS else "maximize"
    )
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        load_if_exists=True,
    )

    def objective(trial: Any) -> float:
        params = {**fixed_params, **suggest_params(trial, search_space)}
        result = evaluate_params(
            family,
            params,
            X,
            y,
            cv=cv,
            feature_config=feature_config,
            seed=model_seed,
            n_jobs=n_jobs,
        )
        trial.set_user_attr("roc_auc_std", result.std("roc_auc"))
        return result.mean(metric)

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    remaining = max(0, n_trials - len(complete))
    if remaining:
        study.optimize(objective, n_trials=remaining, show_progress_bar=show_progress_bar)
    return study
