"""What nested CV (validate_tuning) and prediction instability cost, per model family.

Both stages are a number of pipeline fits: tune fits n_trials x n_splits x n_repeats
pipelines on (1 - 1/n_splits) of the training split; validate_tuning refits the same search
in each outer fold (outer_splits x n_trials x inner_splits x inner_repeats fits on
(1 - 1/outer) x (1 - 1/inner) of it, plus one refit per outer fold); instability fits
n_bootstrap pipelines on resamples of the whole split. This script times single fits of
each family (one BLAS thread, as inside the stages' joblib workers; the family's search
space sampled by a seeded random trial, the median of --repeats fits) at those sizes and
prints each stage's estimated wall-clock on --cores cores. Estimates, not measurements of
the stages: `python -m benchmarks.pipeline` times the default family's real pipeline.

Needs data/features/train.csv (`dvc repro featurize`). Run on an idle machine.

Usage: python -m benchmarks.internal_validation [--families logreg ebm] [--n-trials 25]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from stroke_risk.data.prepared import feature_config_from_params, read_prepared
from stroke_risk.data.schema import TARGET
from stroke_risk.io import load_params
from stroke_risk.models.families import FAMILIES
from stroke_risk.models.pipelines import build_model_pipeline, suggest_params
from stroke_risk.models.tuning import load_search_space
from stroke_risk.params import (
    CVParams,
    InstabilityParams,
    TuneParams,
    ValidateTuningParams,
    read_section,
)


def sampled_params(family: str, seed: int) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fixed, space = load_search_space(family)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return {**fixed, **suggest_params(study.ask(), space)}


def fit_seconds(family: str, params: dict, X, y, share: float, repeats: int, config) -> float:
    """Median CPU seconds of one fit + predict on a stratification-free share of the rows."""
    rng = np.random.default_rng(0)
    times = []
    for _ in range(repeats):
        rows = rng.choice(len(y), size=int(share * len(y)), replace=False)
        start = time.process_time()
        pipeline = build_model_pipeline(family, params, feature_config=config, seed=0)
        pipeline.fit(X.iloc[rows], y[rows]).predict_proba(X)
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--n-trials", type=int, help="default: tune.n_trials of params.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    params = load_params("params.yaml")
    cv = read_section(params, "cv", CVParams)
    tune = read_section(params, "tune", TuneParams)
    nested = read_section(params, "validate_tuning", ValidateTuningParams)
    instability = read_section(params, "instability", InstabilityParams)
    n_trials = args.n_trials or tune.n_trials
    nested_trials = nested.n_trials or n_trials
    config = feature_config_from_params(params["featurize"])
    train = read_prepared("data/features/train.csv")
    y = train.pop(TARGET).to_numpy()

    cv_share = 1 - 1 / cv.n_splits
    outer_share = 1 - 1 / nested.outer_splits
    inner_share = outer_share * (1 - 1 / nested.inner_splits)
    print(
        f"{n_trials} trials (validate_tuning: {nested_trials}); {instability.n_bootstrap} "
        f"bootstrap refits; {args.cores} cores; seconds of wall-clock, estimated"
    )
    header = ("family", "fit (s)", "tune", "validate_tuning", "instability", "added")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with threadpool_limits(1):
        for family in args.families:
            chosen = sampled_params(family, seed=0)
            at = {
                share: fit_seconds(family, chosen, train, y, share, args.repeats, config)
                for share in (cv_share, inner_share, outer_share, 1.0)
            }
            tune_s = n_trials * cv.n_splits * cv.n_repeats * at[cv_share] / args.cores
            nested_fits = nested.outer_splits * nested_trials * nested.inner_splits
            nested_s = (
                nested_fits * nested.inner_repeats * at[inner_share]
                + nested.outer_splits * at[outer_share]
            ) / args.cores
            instability_s = instability.n_bootstrap * at[1.0] / args.cores
            print(
                f"| {family} | {at[1.0]:.3f} | {tune_s:.0f} | {nested_s:.0f} | "
                f"{instability_s:.0f} | {nested_s + instability_s:.0f} |"
            )


if __name__ == "__main__":
    main()
