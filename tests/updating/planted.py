"""Planted outcome labels: the model's own test-split risks, resampled, with outcomes drawn
from a known truth (the risks' log-odds shifted by `shift`), as the service would have logged
them. The updating tests and the update-release journey plant their labels with this."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from stroke_risk.data.load import file_md5
from stroke_risk.evaluation.calibration import LOGIT_CLIP
from stroke_risk.log_odds import logit
from stroke_risk.updating.collect import write_outcomes
from tests.conftest import REPO_ROOT


def planted_outcomes(
    directory: Path,
    *,
    n: int,
    shift: float,
    seed: int = 0,
    predictions: Path = REPO_ROOT / "reports/test_predictions.csv",
    model_version: str | None = None,
) -> None:
    """Write `n` labelled predictions to `directory`; `model_version` defaults to the
    repository's model file digest (what the service logs)."""
    probability = pd.read_csv(predictions)["probability"].to_numpy()
    rng = np.random.default_rng(seed)
    p = rng.choice(probability, size=n)
    y = (rng.random(n) < expit(logit(p, floor=LOGIT_CLIP) + shift)).astype(int)
    frame = pd.DataFrame(
        {
            "prediction_id": [f"{i:032x}" for i in range(n)],
            "created_at": 1.0,
            "labelled_at": 2.0,
            "model_version": model_version or file_md5(REPO_ROOT / "models/model.joblib"),
            "probability": p,
            "decision": (p >= 0.05).astype(int),
            "label": y,
        }
    )
    write_outcomes(directory, frame, {"labels": n})
