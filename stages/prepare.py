"""Stage prepare: validate the raw CSV, drop exact duplicates, split train/test.

Reads params: data.raw_path, split.test_size, split.seed.
Writes: data/prepared/{train,test}.csv, reports/data_summary.json (provenance from the file
that was read: name, path, sha256, counts, missing values). Its outputs are `persist` in
dvc.yaml, so a bad file fails here with the previous outputs still in place.
"""

from __future__ import annotations

import argparse

from stroke_risk import paths
from stroke_risk.cli import run_stage
from stroke_risk.data.load import (
    data_summary,
    drop_exact_duplicates,
    load_dataset,
    stratified_split,
)
from stroke_risk.io import load_params, write_csv, write_json
from stroke_risk.params import DataParams, SplitParams, read_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default=paths.PARAMS)
    parser.add_argument("--train", default=paths.PREPARED_TRAIN)
    parser.add_argument("--test", default=paths.PREPARED_TEST)
    parser.add_argument("--summary", default=paths.DATA_SUMMARY)
    args = parser.parse_args()
    params = load_params(args.params)
    data = read_section(params, "data", DataParams)
    split_params = read_section(params, "split", SplitParams)

    dataset = load_dataset(data.raw_path)
    deduplicated = drop_exact_duplicates(dataset)
    split = stratified_split(deduplicated, test_size=split_params.test_size, seed=split_params.seed)
    summary = data_summary(data.raw_path, dataset, deduplicated, split)
    write_csv(args.train, split.train)
    write_csv(args.test, split.test)
    write_json(args.summary, summary)


if __name__ == "__main__":
    run_stage("prepare", main)
