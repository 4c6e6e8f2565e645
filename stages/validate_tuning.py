"""Stage validate_tuning: nested CV around the tune stage's whole search, on train only.

The tune stage's CV score is the best of n_trials scores on the folds that chose it, so it
is optimistic. Here each outer fold reruns the same Optuna search on its training part
alone (a cheaper inner CV, see params), refits the chosen params there and scores the
held-out part: the mean is an estimate of the tuned model without selection optimism.

Reads params: model.family, tune.n_trials, tune.metric, tune.sampler_seed, tune.n_jobs,
cv.seed, train.seed, featurize (feature definitions), validate_tuning.*; the family's
search space from conf/search_space/<family>.yaml.
Writes: reports/nested_cv.json (method, per-outer-fold params and scores, mean ± sd).
"""

from __future__ import annotations

import argparse

from stroke_risk import paths
from stroke_risk.cli import run_stage
from stroke_risk.data.prepared import read_prepared
from stroke_risk.data.schema import TARGET
from stroke_risk.io import load_params, write_json
from stroke_risk.models.tuning import (
    NestedCVSettings,
    nested_cv_report,
    nested_tuning_cv,
    study_spec_from_params,
)
from stroke_risk.params import TuneParams, ValidateTuningParams, read_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default=paths.PARAMS)
    parser.add_argument("--train", default=paths.FEATURES_TRAIN)
    parser.add_argument("--report", default=paths.NESTED_CV_REPORT)
    args = parser.parse_args()
    params = load_params(args.params)
    tune = read_section(params, "tune", TuneParams)
    nested = read_section(params, "validate_tuning", ValidateTuningParams)
    spec = study_spec_from_params(params, args.train)
    settings = NestedCVSettings(
        outer_splits=nested.outer_splits,
        inner_splits=nested.inner_splits,
        inner_repeats=nested.inner_repeats,
        seed=nested.seed,
    )
    n_trials = nested.n_trials or tune.n_trials

    train = read_prepared(args.train)
    y = train.pop(TARGET).to_numpy()
    result = nested_tuning_cv(
        spec, train, y, settings=settings, n_trials=n_trials, n_jobs=tune.n_jobs
    )
    write_json(
        args.report,
        nested_cv_report(
            result, family=spec.family, metric=spec.metric, settings=settings, n_trials=n_trials
        ),
    )
    print(
        f"nested CV ROC-AUC {result.mean('roc_auc'):.4f} ± {result.std('roc_auc'):.4f} "
        f"({settings.outer_splits} outer folds, {n_trials} trials each)"
    )


if __name__ == "__main__":
    run_stage("validate_tuning", main)
