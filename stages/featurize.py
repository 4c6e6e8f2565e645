"""Stage featurize: engineered features and the reference profile of the training split.

The test split is not read here: evaluate applies the same stateless features through the
serving pipeline, so nothing before evaluate depends on a test row.

Reads params: featurize.*.
Writes: data/features/train.csv, models/reference_profile.json.
"""

from __future__ import annotations

import argparse

from stroke_risk import paths
from stroke_risk.cli import run_stage
from stroke_risk.data.features import add_engineered_features, build_reference_profile
from stroke_risk.data.prepared import feature_config_from_params, read_prepared
from stroke_risk.data.schema import TARGET
from stroke_risk.io import load_params, write_csv, write_json
from stroke_risk.params import FeaturizeParams, read_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default=paths.PARAMS)
    parser.add_argument("--train", default=paths.PREPARED_TRAIN)
    parser.add_argument("--features", default=paths.FEATURES_TRAIN)
    parser.add_argument("--profile", default=paths.REFERENCE_PROFILE)
    args = parser.parse_args()
    params = read_section(load_params(args.params), "featurize", FeaturizeParams)

    train = read_prepared(args.train)
    features = add_engineered_features(train, feature_config_from_params(params.model_dump()))
    profile = build_reference_profile(train, target=TARGET, seed=params.profile_seed)
    write_csv(args.features, features)
    write_json(args.profile, profile)


if __name__ == "__main__":
    run_stage("featurize", main)
