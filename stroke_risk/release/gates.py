"""Release gates: what a trained model must show on held-out data before `make release`.

The gates are declared in conf/release/gates.yaml (not composed into params.yaml: they decide
whether a model may be released, not how it is trained). For train's model every gate reads
the development test split — reports/evaluation.json and reports/test_predictions.csv,
written by evaluate from the held-out rows nothing was fitted, tuned or thresholded on. For
an update from outcome labels (`make release MODEL=updated`) the same gates read the update's
held-out labels in the same shape (reports/outcomes/update_holdout.json and its rows,
stroke_risk/updating/holdout.py), and @production is paired with it there.

Pure functions: parse the gate file, check a run's evaluation, compare a candidate with the
`@production` run on the paired test (stroke_risk/evaluation/comparison.py). Each result is
one line a
person can act on; the release command (stroke_risk/release/publish.py) does the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from stroke_risk import paths
from stroke_risk.evaluation.comparison import (
    COMPARED_METRICS,
    THRESHOLD_METRICS,
    Run,
    direction,
    holdout_comparison,
)
from stroke_risk.release.records import ReleaseError
from stroke_risk.updating.holdout import BASE_PROBABILITY, LABEL, PROBABILITY
from stroke_risk.updating.holdout import SPLIT_NAME as HOLDOUT_SPLIT

GATES_FILE = "conf/release/gates.yaml"
# Test metrics evaluate writes with a 95 % CI (reports/evaluation.json `test`).
CI_METRICS = (
    "roc_auc",
    "average_precision",
    "brier",
    "log_loss",
    "recall",
    "precision",
    "specificity",
    "f1",
    "positive_rate",
)
PAIRED_METRICS = COMPARED_METRICS + THRESHOLD_METRICS
KNOWN_KEYS = frozenset(
    {
        "test_ci_low_at_least",
        "test_ci_low_above",
        "calibration_slope_ci_contains",
        "not_worse_than_production",
    }
)


@dataclass(frozen=True)
class ProductionGate:
    """Paired test of the candidate against the `@production` run on the shared test split."""

    metrics: tuple[str, ...]
    significance: float = 0.05
    n_resamples: int = 1000
    seed: int = 42


@dataclass(frozen=True)
class Gates:
    ci_low_at_least: Mapping[str, float]
    ci_low_above: Mapping[str, float]
    calibration_slope_ci_contains: float | None
    production: ProductionGate | None


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str

    @property
    def line(self) -> str:
        """One line: `gate NAME: detail`."""
        return f"gate {self.name}: {self.detail}"

    def as_record(self) -> dict[str, Any]:
        return {"gate": self.name, "passed": self.passed, "detail": self.detail}


# ---------------------------------------------------------------- the gate file


def _bounds(raw: Any, key: str, source: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ReleaseError(f"{source}: `{key}` must map test metrics to numbers; fix {source}")
    unknown = sorted(set(raw) - set(CI_METRICS))
    if unknown:
        raise ReleaseError(
            f"{source}: `{key}` names unknown metric(s) {', '.join(map(str, unknown))}; "
            f"allowed: {', '.join(CI_METRICS)}"
        )
    bounds: dict[str, float] = {}
    for metric, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ReleaseError(f"{source}: `{key}.{metric}` must be a number, not {value!r}")
        bounds[str(metric)] = float(value)
    return bounds


def _production_gate(raw: Any, source: str) -> ProductionGate | None:
    if raw is None or raw is False:
        return None
    if not isinstance(raw, Mapping):
        raise ReleaseError(
            f"{source}: `not_worse_than_production` must be a mapping with `metrics`"
        )
    metrics = raw.get("metrics") or list(COMPARED_METRICS)
    unknown = sorted(set(map(str, metrics)) - set(PAIRED_METRICS))
    if unknown:
        raise ReleaseError(
            f"{source}: `not_worse_than_production.metrics` names unknown metric(s) "
            f"{', '.join(unknown)}; allowed: {', '.join(PAIRED_METRICS)}"
        )
    significance = raw.get("significance", 0.05)
    if not isinstance(significance, int | float) or not 0 < significance < 1:
        raise ReleaseError(
            f"{source}: `not_worse_than_production.significance` must be in (0, 1), "
            f"not {significance!r}"
        )
    n_resamples = raw.get("n_resamples", 1000)
    if not isinstance(n_resamples, int) or n_resamples < 100:
        raise ReleaseError(
            f"{source}: `not_worse_than_production.n_resamples` must be an integer >= 100"
        )
    return ProductionGate(
        metrics=tuple(map(str, metrics)),
        significance=float(significance),
        n_resamples=n_resamples,
        seed=int(raw.get("seed", 42)),
    )


def parse_gates(raw: Any, source: str = GATES_FILE) -> Gates:
    """Gates from the parsed gate file; a malformed file is a one-line ReleaseError."""
    if not isinstance(raw, Mapping):
        raise ReleaseError(f"{source} must be a YAML mapping of gates; restore it from git")
    unknown = sorted(set(map(str, raw)) - KNOWN_KEYS)
    if unknown:
        raise ReleaseError(
            f"{source}: unknown gate(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(KNOWN_KEYS))}"
        )
    slope = raw.get("calibration_slope_ci_contains")
    if slope is not None and (isinstance(slope, bool) or not isinstance(slope, int | float)):
        raise ReleaseError(f"{source}: `calibration_slope_ci_contains` must be a number")
    return Gates(
        ci_low_at_least=_bounds(raw.get("test_ci_low_at_least"), "test_ci_low_at_least", source),
        ci_low_above=_bounds(raw.get("test_ci_low_above"), "test_ci_low_above", source),
        calibration_slope_ci_contains=None if slope is None else float(slope),
        production=_production_gate(raw.get("not_worse_than_production"), source),
    )


def load_gates(root: Path) -> Gates:
    """The project's gates (conf/release/gates.yaml under `root`)."""
    path = root / GATES_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReleaseError(f"{GATES_FILE} not found; restore it from git") from None
    except yaml.YAMLError as error:
        raise ReleaseError(
            f"{GATES_FILE} is not valid YAML ({str(error).splitlines()[0]})"
        ) from None
    return parse_gates(raw, GATES_FILE)


# ---------------------------------------------------------------- checking


def _test_interval(evaluation: Mapping[str, Any], metric: str) -> tuple[float, float, float] | None:
    entry = (evaluation.get("test") or {}).get(metric) or {}
    value, low, high = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
    if value is None or low is None or high is None:
        return None
    return float(value), float(low), float(high)


def evaluation_gates(
    gates: Gates,
    evaluation: Mapping[str, Any],
    *,
    split: str = "test",
    source: str = paths.EVALUATION,
) -> list[GateResult]:
    """The gates on the candidate's own held-out results: reports/evaluation.json for a
    trained model; for an update, the same shape on its held-out labels (split "held-out",
    source reports/outcomes/update_holdout.json, stroke_risk/updating/holdout.py)."""
    results: list[GateResult] = []
    bounded = [(m, b, "≥", True) for m, b in gates.ci_low_at_least.items()] + [
        (m, b, ">", False) for m, b in gates.ci_low_above.items()
    ]
    for metric, bound, sign, inclusive in bounded:
        name = f"{split} {metric} CI lower bound {sign} {bound:g}"
        interval = _test_interval(evaluation, metric)
        if interval is None:
            results.append(GateResult(name, False, f"{source} has no test.{metric} with a CI"))
            continue
        value, low, high = interval
        passed = low >= bound if inclusive else low > bound
        results.append(
            GateResult(
                name,
                passed,
                f"{split} {metric} {value:.3f}, 95 % CI {low:.3f}–{high:.3f}"
                + ("" if passed else f": lower bound not {sign} {bound:g}"),
            )
        )
    target = gates.calibration_slope_ci_contains
    if target is not None:
        name = f"calibration slope CI contains {target:g}"
        slope = ((evaluation.get("calibration") or {}).get("test") or {}).get(
            "calibration_slope"
        ) or {}
        if slope.get("ci_low") is None or slope.get("ci_high") is None:
            results.append(GateResult(name, False, f"{source} has no calibration.test slope CI"))
        else:
            low, high = float(slope["ci_low"]), float(slope["ci_high"])
            passed = low <= target <= high
            results.append(
                GateResult(
                    name,
                    passed,
                    f"{split} calibration slope {float(slope['value']):.3f}, 95 % CI "
                    f"{low:.3f}–{high:.3f}" + ("" if passed else f": excludes {target:g}"),
                )
            )
    return results


def held_out_runs(
    predictions: pd.DataFrame, *, threshold: float, base_threshold: float
) -> tuple[Run, Run]:
    """(the update, its base) as comparison Runs on the update's held-out patients
    (rerun by publish.held_out_rows), each at its own threshold, so production_gate
    pairs them exactly as it pairs two trained models on the test split."""

    def run(name: str, column: str, cut: float) -> Run:
        return Run(
            name=name,
            family="",
            data=HOLDOUT_SPLIT,
            cv_settings={},
            fold_scores=pd.DataFrame(),
            evaluation={"threshold": {"value": cut}},
            test_predictions=pd.DataFrame(
                {"stroke": predictions[LABEL], "probability": predictions[column]}
            ),
        )

    return run("update", PROBABILITY, threshold), run("base", BASE_PROBABILITY, base_threshold)


def production_gate(
    gate: ProductionGate,
    candidate: Run,
    production: Run | None,
    production_label: str | None,
) -> GateResult:
    """Not significantly worse than `@production` on the paired bootstrap of the test split.

    `production` None means nothing is `@production` yet: the gate passes and says so.
    Runs whose test predictions are not on the same rows cannot be paired: the gate fails
    (an untested change is not a pass; override with a reason).
    """
    name = "not worse than @production"
    if production is None:
        return GateResult(name, True, "nothing is @production yet; no comparison needed")
    compared = holdout_comparison(
        candidate, production, n_resamples=gate.n_resamples, seed=gate.seed
    )
    if compared is None:
        return GateResult(
            name,
            False,
            f"cannot pair with @production ({production_label}): the test predictions are "
            "not on the same patients",
        )
    worse: list[str] = []
    for metric in gate.metrics:
        result = compared.get(metric)
        if result is None:
            continue
        p = result["p"]
        difference = float(result["difference"] or 0.0)
        significant = p is not None and p < gate.significance
        if significant and direction(metric, difference, 0.0) == "worse":
            worse.append(f"{metric} {difference:+.3f} (p = {p:.3f})")
    if worse:
        return GateResult(
            name, False, f"significantly worse than {production_label}: {', '.join(worse)}"
        )
    return GateResult(
        name,
        True,
        f"no significant loss against {production_label} on "
        f"{', '.join(m for m in gate.metrics if m in compared)} (paired bootstrap, "
        f"{gate.n_resamples} resamples, p < {gate.significance:g} counts)",
    )


def failed(results: Sequence[GateResult]) -> list[GateResult]:
    return [result for result in results if not result.passed]
