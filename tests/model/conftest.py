"""The real trained model (models/model.joblib from `dvc repro`) and a patient population."""

from __future__ import annotations

import json
import os

import joblib
import pandas as pd
import pytest

from stroke_risk.data.schema import EXAMPLE_RECORD, FEATURE_NAMES
from tests.conftest import REPO_ROOT

MODEL_PATH = REPO_ROOT / "models" / "model.joblib"
METADATA_PATH = REPO_ROOT / "models" / "model_metadata.json"


def _require(path) -> None:
    if not path.exists():
        message = f"{path.relative_to(REPO_ROOT)} is missing: run `dvc repro` first"
        # In CI the pipeline runs before the tests, so a missing model is a failure there.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def trained_model():
    """The fitted serving pipeline the API serves."""
    _require(MODEL_PATH)
    return joblib.load(MODEL_PATH)


@pytest.fixture(scope="session")
def model_metadata() -> dict:
    _require(METADATA_PATH)
    return json.loads(METADATA_PATH.read_text())


@pytest.fixture(scope="session")
def adults(brain_frame) -> pd.DataFrame:
    """Adult patients (18-75, so ten years older stays inside the data's age range)."""
    frame = brain_frame[brain_frame["age"].between(18, 72)]
    return frame[list(FEATURE_NAMES)].sample(800, random_state=0).reset_index(drop=True)


def patient(**overrides) -> pd.DataFrame:
    """One patient record of every schema field (a typical middle-aged adult by default).

    Built on EXAMPLE_RECORD, so a field added to the schema is present here too.
    """
    record = {
        **EXAMPLE_RECORD,
        "gender": "Female",
        "age": 50.0,
        "hypertension": 0,
        "heart_disease": 0,
        "ever_married": "Yes",
        "work_type": "Private",
        "Residence_type": "Urban",
        "avg_glucose_level": 95.0,
        "bmi": 26.0,
        "smoking_status": "never smoked",
    }
    record.update(overrides)
    return pd.DataFrame([record], columns=list(FEATURE_NAMES))
