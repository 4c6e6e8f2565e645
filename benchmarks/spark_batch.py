"""Batch scoring on Spark: `mlflow.pyfunc.spark_udf` of the registered model, checked and timed.

The README's scaling table names `mlflow.pyfunc.spark_udf("models:/stroke-risk@production")`
as the next engine for batch scoring. This runs it for real, in local mode:

1. registers the workspace's model revision (models/model.joblib + metadata, as `make run`
   logs it) in a throwaway MLflow store in a temporary folder, alias `@production`;
2. builds a batch from data/prepared/test.csv (every 10th bmi missing), repeated to --rows;
3. asks the service (the Flask app in process, /predict in chunks of its batch limit) for
   the first --check-rows rows, and the pyfunc in process for all rows (the baseline);
4. scores all rows with the Spark UDF (local[2], Arrow), once to warm up and once timed;
5. checks the UDF's probability, decision and threshold equal the service's (and the
   baseline's) row by row, and prints rows/s of each and their ratio, in the same run.

Exits 1 if any answer differs. Needs Java 17+ (Spark 4) and `pyspark` (requirements/dev.in).

Usage: python -m benchmarks.spark_batch [--rows 200000] [--check-rows 2000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_URI = "models:/stroke-risk@production"
RESULT_TYPE = "stroke_probability double, stroke_prediction long, threshold double"
# The service answers probabilities as JSON floats; the start-up check allows 1e-9.
TOLERANCE = 1e-9


def register_workspace_model(store: Path) -> None:
    """Log and register the workspace model in a throwaway store, alias @production."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    from mlflow.tracking import MlflowClient

    from stroke_risk.tracking.mlflow_runs import RevisionFiles, log_model_revision

    MlflowClient().create_experiment("spark-batch", artifact_location=str(store / "artifacts"))
    log_model_revision(
        RevisionFiles().under(REPO_ROOT),
        experiment="spark-batch",
        registered_model="stroke-risk",
        alias="production",
    )


def batch_frame(rows: int) -> pd.DataFrame:
    """The test split's features, every 10th bmi missing, repeated to `rows` rows."""
    from stroke_risk.data.schema import FEATURE_NAMES

    test = pd.read_csv(REPO_ROOT / "data/prepared/test.csv")[list(FEATURE_NAMES)]
    test["bmi"] = test["bmi"].astype(float)
    test.loc[test.index % 10 == 0, "bmi"] = np.nan
    repeats = math.ceil(rows / len(test))
    return pd.concat([test] * repeats, ignore_index=True).head(rows)


def service_answers(frame: pd.DataFrame, log_dir: Path) -> pd.DataFrame:
    """/predict of the in-process service for every row (chunks of its batch limit)."""
    from app.factory import create_app
    from app.settings import Settings

    settings = Settings.for_project(REPO_ROOT, monitor_db_path=log_dir / "predictions.sqlite")
    client = create_app(settings, extensions=()).test_client()
    records = json.loads(frame.to_json(orient="records"))  # NaN -> null, numpy -> JSON
    answers: list[dict[str, Any]] = []
    for start in range(0, len(records), settings.max_batch_size):
        chunk = records[start : start + settings.max_batch_size]
        response = client.post("/predict", json={"instances": chunk})
        if response.status_code != 200:
            sys.exit(f"the service refused the batch: {response.get_data(as_text=True)[:300]}")
        body = response.get_json()
        assert isinstance(body, dict)  # a 200 answer of /predict is a JSON object
        answers += body["predictions"]
    return pd.DataFrame(answers)


def spark_scores(frame: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """(answers in row order, cold seconds, warm seconds) of the Spark UDF on local[2]."""
    import mlflow.pyfunc
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col, struct

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("stroke-risk-batch")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        data = spark.createDataFrame(frame.reset_index(names="row")).repartition(2).cache()
        data.count()
        udf = mlflow.pyfunc.spark_udf(
            spark, MODEL_URI, result_type=RESULT_TYPE, env_manager="local"
        )
        features = list(frame.columns)
        scored = data.select("row", udf(struct(*[col(name) for name in features])).alias("out"))
        timings = []
        for _ in range(2):  # cold (Python workers, model load), then warm
            started = time.perf_counter()
            answers: pd.DataFrame = scored.select("row", "out.*").toPandas()
            timings.append(time.perf_counter() - started)
        return answers.sort_values("row").drop(columns="row").reset_index(drop=True), *timings
    finally:
        spark.stop()


def differing_rows(ours: pd.DataFrame, theirs: pd.DataFrame) -> list[int]:
    """Rows where probability (within TOLERANCE), decision or threshold differ."""
    probability = np.isclose(
        ours["stroke_probability"].to_numpy(float),
        theirs["stroke_probability"].to_numpy(float),
        rtol=TOLERANCE,
        atol=1e-12,
    )
    decision = ours["stroke_prediction"].to_numpy(int) == theirs["stroke_prediction"].to_numpy(int)
    threshold = np.isclose(ours["threshold"].to_numpy(float), theirs["threshold"].to_numpy(float))
    return np.flatnonzero(~(probability & decision & threshold)).tolist()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--check-rows", type=int, default=2_000)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    store = Path(tempfile.mkdtemp(prefix="stroke-spark-batch-"))
    try:
        register_workspace_model(store)
        frame = batch_frame(args.rows)
        service = service_answers(frame.head(args.check_rows), store)

        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(MODEL_URI)
        started = time.perf_counter()
        baseline = model.predict(frame).reset_index(drop=True)
        baseline_seconds = time.perf_counter() - started

        spark, cold, warm = spark_scores(frame)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    against_service = differing_rows(spark.head(args.check_rows), service)
    against_baseline = differing_rows(spark, baseline)
    print(
        f"{len(frame)} rows ({int(frame['bmi'].isna().sum())} with bmi missing); "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"answers: Spark UDF vs the service on the first {args.check_rows} rows: "
        f"{len(against_service)} differ; vs the pyfunc in process on all rows: "
        f"{len(against_baseline)} differ"
    )
    print("| scorer | seconds | rows/s | vs pyfunc in process |\n|---|---|---|---|")
    baseline_rate = len(frame) / baseline_seconds
    for name, seconds in (
        ("pyfunc in process (baseline)", baseline_seconds),
        ("Spark UDF, local[2], first run", cold),
        ("Spark UDF, local[2], second run", warm),
    ):
        rate = len(frame) / seconds
        print(f"| {name} | {seconds:.1f} | {rate:,.0f} | {rate / baseline_rate:.2f}x |")
    if against_service or against_baseline:
        print(f"FAILED: first differing rows {(against_service or against_baseline)[:10]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
