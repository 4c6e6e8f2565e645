"""Stage featurize: add the stateless engineered features; profile the training split.

Reads params: featurize.*.
Writes: data/features/{train,test}.csv, models/reference_profile.json.
"""

from __future__ import annotations

import argparse

import pandas as pd

from stroke_risk.cli import run_stage
from stroke_risk.features import add_engineered_features, build_reference_profile
from stroke_risk.io import load_params, write_csv, write_json
from stroke_risk.schema import TARGET
from stroke_risk.settings import feature_config_from_params, read_prepared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--in-dir", default="data/prepared")
    parser.add_argument("--out-dir", default="data/features")
    parser.add_argument("--profile", default="models/reference_profile.json")
    args = parser.parse_args()
    params = load_params(args.params)["featurize"]
    feature_config = feature_config_from_params(params)

    for split_name in ("train", "test"):
        prepared: pd.DataFrame = read_prepared(f"{args.in_dir}/{split_name}.csv")
        write_csv(
            f"{args.out_dir}/{split_name}.csv", add_engineered_features(prepared, feature_config)
        )
        if split_name == "train":
            # The profile describes training data only: live traffic is compared with
            # what the model learned from, and the test split stays unseen.
            profile = build_reference_profile(prepared, target=TARGET, seed=params["profile_seed"])
            write_json(args.profile, profile)


if __name__ == "__main__":
    run_stage("featurize", main)
