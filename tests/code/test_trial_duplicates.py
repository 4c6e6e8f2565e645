"""Counting duplicate trials: identical sets, and floats within a tolerance of their range."""

from __future__ import annotations

import pytest

from stroke_risk.models.trial_duplicates import duplicate_share, same_parameter_set

SPACE = {
    "max_depth": {"type": "int", "low": 1, "high": 4},
    "learning_rate": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
    "subsample": {"type": "float", "low": 0.5, "high": 1.0},
    "feature_set": {"type": "categorical", "choices": ["compact", "full"]},
}


def trial(depth: int, rate: float, subsample: float, features: str = "full") -> dict:
    return {
        "max_depth": depth,
        "learning_rate": rate,
        "subsample": subsample,
        "feature_set": features,
    }


def test_only_identical_sets_are_exact_duplicates() -> None:
    trials = [trial(2, 0.1, 0.7), trial(2, 0.1, 0.7), trial(2, 0.1, 0.70001), trial(3, 0.1, 0.7)]
    assert duplicate_share(trials, SPACE) == pytest.approx(1 / 4)


def test_near_duplicates_are_measured_on_each_floats_range_log_scale_when_log() -> None:
    # subsample range 0.5: 0.02 apart is 4 % of it (near at 5 %), 0.03 is 6 % (not near).
    assert same_parameter_set(trial(2, 0.1, 0.70), trial(2, 0.1, 0.72), SPACE, 0.05)
    assert not same_parameter_set(trial(2, 0.1, 0.70), trial(2, 0.1, 0.73), SPACE, 0.05)
    # learning_rate spans two decades: x1.2 is log10(1.2)/2 = 4 % of it, x1.3 is 5.7 %.
    assert same_parameter_set(trial(2, 0.1, 0.7), trial(2, 0.12, 0.7), SPACE, 0.05)
    assert not same_parameter_set(trial(2, 0.1, 0.7), trial(2, 0.13, 0.7), SPACE, 0.05)
    # Integers and categories must match exactly whatever the tolerance.
    assert not same_parameter_set(trial(2, 0.1, 0.7), trial(3, 0.1, 0.7), SPACE, 0.5)
    assert not same_parameter_set(
        trial(2, 0.1, 0.7, "full"), trial(2, 0.1, 0.7, "compact"), SPACE, 0.5
    )


def test_each_repeat_counts_once_and_no_trials_is_zero() -> None:
    trials = [trial(1, 0.1, 0.6)] * 3 + [trial(4, 0.5, 0.9)]
    assert duplicate_share(trials, SPACE) == pytest.approx(2 / 4)
    assert duplicate_share([], SPACE) == 0.0
