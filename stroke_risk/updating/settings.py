"""The change-control plan read from params.yaml's ``updating`` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stroke_risk.params import UpdatingParams, read_section
from stroke_risk.updating.protocol import Protocol


def updating_params(params: Mapping[str, Any]) -> UpdatingParams:
    """The validated section (ParamsError names a bad key)."""
    return read_section(params, "updating", UpdatingParams)


def protocol_from_params(params: Mapping[str, Any]) -> Protocol:
    """The Protocol the plan in params.yaml declares."""
    plan = updating_params(params)
    return Protocol(
        allowed_methods=tuple(plan.allowed_methods),
        alpha=plan.alpha,
        min_events=plan.min_events,
        min_non_events=plan.min_non_events,
        held_out_fraction=plan.held_out_fraction,
        seed=plan.seed,
        min_log_likelihood_gain=plan.min_log_likelihood_gain,
        require_calibrated_on_held_out=plan.require_calibrated_on_held_out,
    )
