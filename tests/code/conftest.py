"""Fixtures shared by the unit tests."""

import pytest

from stroke_risk.data.features import FeatureConfig, add_engineered_features
from stroke_risk.data.schema import TARGET


@pytest.fixture(scope="module")
def featurized(brain_frame):
    """brain.csv with the engineered columns (default FeatureConfig), and its labels."""
    frame = add_engineered_features(brain_frame, FeatureConfig())
    y = frame.pop(TARGET).to_numpy()
    return frame, y
