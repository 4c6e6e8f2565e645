"""`python -m stroke_risk.commands.tuning_worker`: trials for a shared Optuna study.

The library it calls: stroke_risk.models.tuning.
"""

from __future__ import annotations

import argparse
import sys

from stroke_risk import paths
from stroke_risk.data.prepared import read_prepared
from stroke_risk.data.schema import TARGET
from stroke_risk.io import load_params
from stroke_risk.models.tuning import (
    TuningError,
    redact_storage,
    run_trials,
    study_name,
    study_spec_from_params,
)
from stroke_risk.params import ParamsError


def main(argv: list[str] | None = None) -> None:
    """`python -m stroke_risk.commands.tuning_worker`: add trials to a shared study."""
    parser = argparse.ArgumentParser(
        prog="python -m stroke_risk.commands.tuning_worker",
        description="Run trials in the persistent study the tune stage would use, so several "
        "processes or machines can share one search. Run from the repository root after "
        "`dvc repro featurize`; then `dvc repro` with the same tune.storage collects them.",
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train", default=paths.FEATURES_TRAIN)
    parser.add_argument("--storage", help="SQLAlchemy URL (default: tune.storage)")
    parser.add_argument("--n-trials", type=int, required=True)
    parser.add_argument("--worker-index", type=int, default=0, help="distinct per worker")
    parser.add_argument("--n-jobs", type=int, default=1, help="CV folds in parallel")
    parser.add_argument(
        "--no-constant-liar",
        dest="constant_liar",
        action="store_false",
        help="plain TPE, blind to other workers' running trials (for comparison only: "
        "benchmarks/tuning.py)",
    )
    args = parser.parse_args(argv)

    try:
        params = load_params(args.params)
        storage = args.storage or (params.get("tune") or {}).get("storage")
        if not storage:
            raise TuningError("a worker needs a shared study: pass --storage or set tune.storage")
        spec = study_spec_from_params(params, args.train)
        train = read_prepared(args.train)
        y = train.pop(TARGET).to_numpy()
        name = study_name(spec.family, spec.fingerprint())
        study = run_trials(
            spec,
            train,
            y,
            storage=storage,
            name=name,
            n_trials=args.n_trials,
            n_jobs=args.n_jobs,
            worker_index=args.worker_index,
            constant_liar=args.constant_liar,
        )
    except (TuningError, ParamsError, FileNotFoundError) as error:
        print(f"tuning worker failed: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"study {name} in {redact_storage(storage)}: {len(study.trials)} trials stored")


if __name__ == "__main__":
    main()
