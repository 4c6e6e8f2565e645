"""Duplicate trials of a study: parameter sets a tuning run paid for twice.

Two workers sharing a study can suggest the same parameter set at once (a known complaint
about Optuna's TPE in parallel; the constant liar is its remedy, stroke_risk/models/tuning.py).
A trial is a duplicate when its parameter set repeats an earlier trial's: integer and
categorical parameters equal and, with `tolerance` t > 0, each float within t of its range
(measured on the log scale for a log-scaled parameter). With t = 0 only identical sets count.
The search space is the `search_space` mapping of conf/search_space/<family>.yaml.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def _position(value: float, distribution: Mapping[str, Any]) -> float:
    """Where value lies in its range, 0..1 (log scale for a log-scaled parameter)."""
    low, high = float(distribution["low"]), float(distribution["high"])
    if distribution.get("log"):
        value, low, high = math.log(value), math.log(low), math.log(high)
    return (value - low) / (high - low) if high > low else 0.0


def same_parameter_set(
    first: Mapping[str, Any],
    second: Mapping[str, Any],
    search_space: Mapping[str, Mapping[str, Any]],
    tolerance: float = 0.0,
) -> bool:
    """Whether two trials' parameters are the same set (floats within tolerance of range)."""
    if first.keys() != second.keys():
        return False
    for name, value in first.items():
        other = second[name]
        distribution = search_space.get(name, {})
        if distribution.get("type") == "float" and tolerance > 0:
            if abs(_position(value, distribution) - _position(other, distribution)) > tolerance:
                return False
        elif value != other:
            return False
    return True


def duplicate_share(
    trial_params: Sequence[Mapping[str, Any]],
    search_space: Mapping[str, Mapping[str, Any]],
    tolerance: float = 0.0,
) -> float:
    """Share of trials (in trial-number order) whose parameter set repeats an earlier one's;
    0.0 for no trials."""
    duplicates = sum(
        any(
            same_parameter_set(params, earlier, search_space, tolerance)
            for earlier in trial_params[:index]
        )
        for index, params in enumerate(trial_params)
    )
    return duplicates / len(trial_params) if trial_params else 0.0
