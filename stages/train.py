"""Stage train: fit the tuned pipeline on the whole training split; pick the threshold.

Reads params: model.family, threshold.*, train.seed, featurize (feature definitions).
Writes: models/model.joblib (raw fields -> probability; the pipeline the later stages and
MLflow load), models/serving_model.npz (the same model as data only, the one file the
service loads: stroke_risk/models/serving_artifact.py), models/model_metadata.json
(stroke_risk/models/metadata.py).
MLflow logging happens once the model is evaluated (stages/evaluate.py).
"""

from __future__ import annotations

import argparse

import joblib
import pandas as pd

from stroke_risk import paths
from stroke_risk.cli import run_stage
from stroke_risk.data.load import file_md5, file_sha256
from stroke_risk.data.prepared import read_prepared
from stroke_risk.data.schema import TARGET
from stroke_risk.io import atomic_path, load_params, read_json, write_json
from stroke_risk.models.metadata import choose_threshold, model_metadata
from stroke_risk.models.pipelines import build_serving_pipeline
from stroke_risk.models.reproducible_fit import fit_reproducibly
from stroke_risk.models.serving_artifact import export_pipeline, serving_model_bytes
from stroke_risk.models.tuned_model import tuned_model
from stroke_risk.params import ThresholdParams, read_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default=paths.PARAMS)
    parser.add_argument("--train", default=paths.FEATURES_TRAIN)
    parser.add_argument("--tuning", default=paths.TUNING_REPORT)
    parser.add_argument("--oof", default=paths.OOF_PREDICTIONS)
    parser.add_argument("--model", default=paths.MODEL)
    parser.add_argument("--serving-model", default=paths.SERVING_MODEL)
    parser.add_argument("--metadata", default=paths.MODEL_METADATA)
    args = parser.parse_args()
    params = load_params(args.params)
    policy = read_section(params, "threshold", ThresholdParams)
    tuning = read_json(args.tuning)
    model = tuned_model(params, tuning, tuning_path=args.tuning)

    train = read_prepared(args.train)
    y = train.pop(TARGET).to_numpy()
    fitted = fit_reproducibly(model.pipeline(), train, y)
    serving_pipeline = build_serving_pipeline(fitted, model.feature_config)
    oof = pd.read_csv(args.oof)
    threshold = choose_threshold(oof[TARGET].to_numpy(), oof["oof_probability"].to_numpy(), policy)
    metadata = model_metadata(
        model,
        tuning=tuning,
        threshold=threshold,
        y_train=y,
        training_data_sha256=file_sha256(args.train),
    )
    with atomic_path(args.model) as temporary:
        joblib.dump(serving_pipeline, temporary)
        # The service's copy, exported before anything is renamed into place (a pipeline it
        # cannot express writes nothing) and bound to the pipeline by the pipeline's md5,
        # the model version MLflow and releases.json know it by.
        serving_model = serving_model_bytes(export_pipeline(serving_pipeline, file_md5(temporary)))
    with atomic_path(args.serving_model) as temporary:
        temporary.write_bytes(serving_model)
    write_json(args.metadata, metadata)


if __name__ == "__main__":
    run_stage("train", main)
