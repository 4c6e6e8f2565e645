"""The sections of params.yaml as typed, strict models: one definition per stage's params.

A stage reads its sections through `read_section`, so a misspelt or unknown key, a missing
key or a value of the wrong type stops the stage with one line naming the key and the fix,
before any output is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stroke_risk.evaluation.thresholds import THRESHOLD_POLICY_NAMES


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, values are never coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class DataParams(Section):
    raw_path: str


class SplitParams(Section):
    test_size: float = Field(gt=0, lt=1)
    seed: int


class FeaturizeParams(Section):
    age_band_edges: list[float]
    bmi_category_edges: list[float]
    high_glucose_cut: float
    profile_seed: int


class ModelParams(Section):
    # A family of stroke_risk.models.families (its record, conf/model/ and conf/search_space/
    # files). Checked there, not here: params sit below the models, and the stages ask the
    # registry (a one-line error naming the known families), as does `make exp`.
    family: str = Field(min_length=1)


class CVParams(Section):
    n_splits: int = Field(ge=2)
    n_repeats: int = Field(ge=1)
    seed: int


class TuneParams(Section):
    n_trials: int = Field(ge=1)
    metric: Literal["roc_auc", "average_precision", "brier"]
    sampler_seed: int
    n_jobs: int = Field(ge=1)
    # None: an in-memory study, a pure function of code, data and params (the default).
    # A SQLAlchemy URL: a persistent or shared study (resumable, several workers).
    storage: str | None = None


class ValidateTuningParams(Section):
    """Nested CV around the tune stage's search (stages/validate_tuning.py)."""

    outer_splits: int = Field(ge=2)
    # Each outer fold reruns the whole search; a cheaper inner CV than `cv` keeps the
    # nested estimate within the pipeline's time budget.
    inner_splits: int = Field(ge=2)
    inner_repeats: int = Field(ge=1)
    # None: the tune stage's tune.n_trials, so the nested search is the same search.
    n_trials: int | None = Field(default=None, ge=1)
    seed: int


class InstabilityParams(Section):
    """Bootstrap refits for prediction instability (stages/instability.py)."""

    n_bootstrap: int = Field(ge=10)
    seed: int
    n_jobs: int = Field(ge=1)


# The names of the threshold policies' table (stroke_risk/evaluation/thresholds.py), as a
# Literal so a misspelt policy gets pydantic's message listing every allowed name. mypy
# cannot read a Literal built at run time, so it sees a str.
if TYPE_CHECKING:
    ThresholdPolicyName = str
else:
    ThresholdPolicyName = Literal[THRESHOLD_POLICY_NAMES]


class ThresholdParams(Section):
    policy: ThresholdPolicyName
    target_recall: float = Field(gt=0, le=1)
    # net_benefit: harm of a needless follow-up / benefit of a found stroke
    harm_benefit_ratio: float = Field(gt=0)


class TrainParams(Section):
    seed: int


class MlflowParams(Section):
    experiment: str
    registered_model: str
    alias: str


class EvaluateParams(Section):
    bootstrap_resamples: int = Field(ge=10)
    bootstrap_seed: int
    calibration_bins: int = Field(ge=2)
    importance_repeats: int = Field(ge=1)
    importance_seed: int


UpdatingMethod = Literal["keep", "recalibration_in_the_large", "logistic_recalibration"]


class UpdatingParams(Section):
    """The change-control plan for outcome labels (conf/updating/change_control.yaml)."""

    allowed_methods: list[UpdatingMethod] = Field(min_length=1)
    alpha: float = Field(gt=0, lt=1)
    min_events: int = Field(ge=1)
    min_non_events: int = Field(ge=1)
    held_out_fraction: float = Field(gt=0, lt=1)
    seed: int
    min_log_likelihood_gain: float = Field(ge=0)
    require_calibrated_on_held_out: bool
    bootstrap_resamples: int = Field(ge=10)
    bootstrap_seed: int
    outcome_retention_days: int = Field(ge=1)


SECTIONS: dict[str, type[Section]] = {
    "data": DataParams,
    "split": SplitParams,
    "featurize": FeaturizeParams,
    "model": ModelParams,
    "cv": CVParams,
    "tune": TuneParams,
    "validate_tuning": ValidateTuningParams,
    "threshold": ThresholdParams,
    "train": TrainParams,
    "instability": InstabilityParams,
    "mlflow": MlflowParams,
    "evaluate": EvaluateParams,
    "updating": UpdatingParams,
}

SectionT = TypeVar("SectionT", bound=Section)


class ParamsError(ValueError):
    """params.yaml does not fit the typed sections; the message names every bad key."""


def read_section(params: Mapping[str, Any], name: str, model: type[SectionT]) -> SectionT:
    """Validate params[name] against its model; raise ParamsError naming each bad key."""
    if name not in params or params[name] is None:
        raise ParamsError(f"params.yaml has no section '{name}'; {_fix()}")
    try:
        return model.model_validate(params[name])
    except ValidationError as error:
        raise ParamsError("; ".join(_describe(name, e, model) for e in error.errors())) from None


def validate_all(params: Mapping[str, Any]) -> list[str]:
    """Every problem of the whole params.yaml (unknown sections included); [] when valid."""
    problems = [
        f"params.yaml: unknown section '{name}' (known: {', '.join(SECTIONS)})"
        for name in params
        if name not in SECTIONS
    ]
    for name, model in SECTIONS.items():
        try:
            read_section(params, name, model)
        except ParamsError as error:
            problems.append(str(error))
    return problems


def _describe(section: str, error: Any, model: type[Section]) -> str:
    key = ".".join([section, *(str(part) for part in error["loc"])])
    if error["type"] == "extra_forbidden":
        known = ", ".join(f"{section}.{field}" for field in model.model_fields)
        return f"unknown param '{key}' (known: {known}); {_fix()}"
    if error["type"] == "missing":
        return f"missing param '{key}'; {_fix()}"
    return f"param '{key}' = {error.get('input')!r}: {error['msg']}"


def _fix() -> str:
    return "fix conf/ or the -S override (params.yaml is composed from conf/ by dvc exp run)"
