"""Alert-quality benchmark: false alarms without drift, detection delay under planted shifts.

Simulated traffic is drawn from the held-out test set (data/prepared/test.csv) as a
population with the training split's marginals (null_population: raking weights for the
categorical fields, numeric fields jittered then mapped onto training quantiles by rank;
why: monitoring/README.md, "Alert quality"), scored by the repository's model
(models/model.joblib). At every evaluation the service's own computation
(stroke_risk.monitoring.live.live_figures, the function behind the gauges of
app/live_metrics_exporter.py, on the windows the service reads from its log, with the
default settings) gives the
figures, and each alert of monitoring/prometheus/alert_rules.yml is evaluated on them:
its condition (a predicate here whose threshold text must appear in the rule's expr, so
the two cannot drift apart) and its ``for:`` duration read from the rule file.

Cadence: figures every EVALUATION_MINUTES (30) minutes, not every 15 s as Prometheus does
(a ``for: 30m`` alert then fires on two consecutive active evaluations); the drift
classifier (seconds per fit) every 12 h without shift and every 2 h in the shift runs
(the service refits it every minute).

Labels: half of the predictions get their true outcome, LABEL_DELAY_HOURS (2 h) after the
prediction. Without a label shift the outcome is the test row's own; prevalence x2 and
the calibration shift add strokes to the row's outcome so that the risk becomes 2p or
logit^-1(logit p + 0.7), p the model's probability.

Scenarios: 30 days with no shift at 100, 1,000 and 10,000 predictions a day (false
alarms: alert episodes per 30 days); at 1,000 a day, 2 days without shift then each
planted shift for 1.25 days (detection delay from the shift's start). The defaults took
516 s on 2 cores shared with other work (the pool is scored once; each evaluation is one
live_figures call on the windows).

Usage: python -m benchmarks.alerts [--days 30] [--write-readme]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import yaml

from benchmarks.readme_table import print_table
from stroke_risk.data.schema import FEATURE_NAMES, FEATURES, NumericField
from stroke_risk.log_odds import logit
from stroke_risk.monitoring.drift import category_key, compute_drift
from stroke_risk.monitoring.live import (
    Figure,
    FigureSettings,
    LiveWindows,
    classifier_drift_auc,
    live_figures,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
RULES = REPO_ROOT / "monitoring" / "prometheus" / "alert_rules.yml"
README = REPO_ROOT / "monitoring" / "README.md"
README_BLOCK = "alerts-benchmark"

EVALUATION_MINUTES = 30
LABEL_COVERAGE = 0.5
LABEL_DELAY_HOURS = 2.0
# app/settings.py defaults: the drift window and the performance window.
DRIFT_WINDOW_RECORDS, DRIFT_WINDOW_HOURS = 1000, 24.0
PERFORMANCE_WINDOW_RECORDS = 5000
TRAFFIC_PER_DAY = (100, 1_000, 10_000)
SHIFT_TRAFFIC_PER_DAY = 1_000
WARMUP_DAYS, SHIFT_DAYS = 2.0, 1.25
POOL_SIZE = 40_000


# --- the rules, as predicates over one evaluation's figures ------------------------------


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation sees: the exported figures and the last 30 min of counters."""

    figures: dict[str, list[float]]
    scored_30m: int
    positive_30m: int
    reference_positive_rate: float

    def values(self, name: str) -> list[float]:
        return self.figures.get(name, [])

    def one(self, name: str) -> float | None:
        values = self.values(name)
        return values[0] if values else None


def below(evaluation: Evaluation, name: str, threshold: float) -> bool:
    return any(value < threshold for value in evaluation.values(name))


def above(evaluation: Evaluation, name: str, threshold: float) -> bool:
    return any(value > threshold for value in evaluation.values(name))


def at_least(evaluation: Evaluation, name: str, count: float) -> bool:
    value = evaluation.one(name)
    return value is not None and value >= count


def positive_rate_shift(evaluation: Evaluation) -> bool:
    if evaluation.scored_30m < 100:
        return False
    ratio = evaluation.positive_30m / evaluation.scored_30m / evaluation.reference_positive_rate
    return ratio > 2 or ratio < 0.5


def enough_labels(evaluation: Evaluation) -> bool:
    return at_least(evaluation, "stroke_live_positive_labels", 10) and at_least(
        evaluation, "stroke_live_negative_labels", 40
    )


@dataclass(frozen=True)
class RuleCondition:
    """An alert's condition; every ``literals`` string must occur in the rule's expr."""

    alert: str
    literals: tuple[str, ...]
    active: Callable[[Evaluation], bool]
    labels: bool = False  # needs outcome labels


CONDITIONS = (
    RuleCondition(
        "StrokeFeatureDrift",
        ("min by (feature) (stroke_feature_drift_pvalue) < 0.0001",),
        lambda e: below(e, "stroke_feature_drift_pvalue", 0.0001),
    ),
    RuleCondition(
        "StrokeFeatureCorrelationDrift",
        ("min by (pair) (stroke_feature_correlation_pvalue) < 0.0003",),
        lambda e: below(e, "stroke_feature_correlation_pvalue", 0.0003),
    ),
    RuleCondition(
        "StrokeMultivariateDrift",
        ("max(stroke_multivariate_drift_auc) > 0.7", "max(stroke_drift_window_records) >= 200"),
        lambda e: (
            above(e, "stroke_multivariate_drift_auc", 0.7)
            and at_least(e, "stroke_drift_window_records", 200)
        ),
    ),
    RuleCondition(
        "StrokeUnseenCategories",
        ("max by (feature) (stroke_feature_unseen_category_rate) > 0.05",),
        lambda e: above(e, "stroke_feature_unseen_category_rate", 0.05),
    ),
    RuleCondition(
        "StrokeMissingRateHigh",
        ("max by (feature) (stroke_feature_missing_rate) > 0.3",),
        lambda e: above(e, "stroke_feature_missing_rate", 0.3),
    ),
    RuleCondition(
        "StrokePositiveRateShift",
        ("> 2", "< 0.5", "sum(increase(stroke_predictions_total[30m])) >= 100"),
        positive_rate_shift,
    ),
    RuleCondition(
        "StrokeLiveRocAucLow",
        ("max(stroke_live_roc_auc) < 0.7", "max(stroke_live_positive_labels) >= 10"),
        lambda e: below(e, "stroke_live_roc_auc", 0.7) and enough_labels(e),
        labels=True,
    ),
    RuleCondition(
        "StrokeLiveRecallLow",
        ("max(stroke_live_recall) < 0.6", "max(stroke_live_negative_labels) >= 40"),
        lambda e: below(e, "stroke_live_recall", 0.6) and enough_labels(e),
        labels=True,
    ),
    RuleCondition(
        "StrokeLiveCalibrationShift",
        ("min(stroke_live_calibration_pvalue) < 0.001",),
        lambda e: below(e, "stroke_live_calibration_pvalue", 0.001),
        labels=True,
    ),
    RuleCondition(
        "StrokeEstimatedRocAucLow",
        ("max(stroke_estimated_roc_auc) < 0.7", "max(stroke_drift_window_records) >= 200"),
        lambda e: (
            below(e, "stroke_estimated_roc_auc", 0.7)
            and at_least(e, "stroke_drift_window_records", 200)
        ),
    ),
    RuleCondition(
        "StrokeEstimatedRecallLow",
        ("max(stroke_estimated_recall) < 0.6", "max(stroke_drift_window_records) >= 200"),
        lambda e: (
            below(e, "stroke_estimated_recall", 0.6)
            and at_least(e, "stroke_drift_window_records", 200)
        ),
    ),
)


def parse_duration_minutes(text: str) -> float:
    units = {"s": 1 / 60, "m": 1.0, "h": 60.0, "d": 1440.0}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text))


def rule_durations() -> dict[str, float]:
    """Every alert's ``for:`` in minutes; checks each condition's literals are in its expr."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    durations = {}
    for condition in CONDITIONS:
        rule = rules.get(condition.alert)
        if rule is None:
            sys.exit(f"{condition.alert} is not in {RULES}")
        expr = " ".join(rule["expr"].split())
        for literal in condition.literals:
            if literal not in expr:
                sys.exit(f"{condition.alert}: {literal!r} is not in its expr ({expr})")
        durations[condition.alert] = parse_duration_minutes(str(rule.get("for", "0m")))
    return durations


# --- simulated traffic -------------------------------------------------------------------


SHIFTS = ("age +8 y", "glucose x1.3", "prevalence x2", "calibration +0.7", "age-glucose broken")


def raking_weights(
    test: pd.DataFrame, profile: Mapping[str, Any], *, iterations: int = 50
) -> np.ndarray:
    """Row weights under which each categorical and binary field of the held-out rows has
    the training split's shares (iterative proportional fitting over the fields)."""
    weights = np.ones(len(test))
    fields = [spec.name for spec in FEATURES if not isinstance(spec, NumericField)]
    keys = {name: test[name].map(category_key) for name in fields}
    for _ in range(iterations):
        for name in fields:
            shares = profile["features"][name]["category_shares"]
            totals = pd.Series(weights).groupby(keys[name].to_numpy()).sum()
            seen = [c for c in totals.index if float(shares.get(c, 0.0)) > 0]
            target_total = sum(float(shares[c]) for c in seen)
            factor = {
                c: float(shares[c]) / target_total / (totals[c] / totals[seen].sum()) for c in seen
            }
            weights = weights * keys[name].map(factor).fillna(1.0).to_numpy()
    return weights / weights.sum()


def null_population(
    test: pd.DataFrame,
    train: pd.DataFrame,
    profile: Mapping[str, Any],
    size: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Held-out rows as a population with the training split's marginals.

    The 997 held-out rows differ from the training split by their own sampling error
    (glucose: KS p = 0.03 on the whole set); drawing every window from them would replay
    that one fixed difference as a shift lasting the whole simulation. So: rows drawn
    with raking weights (categorical shares as in training), numeric fields jittered a
    little, then mapped onto the training quantiles by rank. Each row keeps its outcome
    and its place in the joint distribution (ranks, so rank correlations are the held-out
    set's); only the marginals are the training split's.
    """
    weights = raking_weights(test, profile)
    pool = test.sample(
        size, replace=True, weights=weights, random_state=rng.integers(2**31)
    ).reset_index(drop=True)
    pool["age"] = pool["age"] + rng.uniform(-0.5, 0.5, size)
    pool["avg_glucose_level"] = pool["avg_glucose_level"] * np.exp(rng.normal(0, 0.01, size))
    pool["bmi"] = pool["bmi"] + rng.normal(0, 0.3, size)
    for spec in FEATURES:
        if isinstance(spec, NumericField):
            present = pool[spec.name].notna().to_numpy()
            ranks = pool.loc[present, spec.name].rank(method="first").to_numpy()
            quantiles = (ranks - 0.5) / present.sum()
            training_values = train[spec.name].dropna().to_numpy(float)
            pool.loc[present, spec.name] = np.quantile(training_values, quantiles)
    return pool


def smallest_pvalues(profile: Mapping[str, Any], frame: pd.DataFrame) -> str:
    """The three smallest per-feature drift p-values of a whole frame against the profile."""
    report = compute_drift(profile, frame[list(FEATURE_NAMES)].to_dict("records"))
    ranked = sorted((f.pvalue, name) for name, f in report.features.items() if f.pvalue is not None)
    return ", ".join(f"{name} p={pvalue:.3g}" for pvalue, name in ranked[:3])


def shifted_inputs(pool: pd.DataFrame, shift: str, rng: np.random.Generator) -> pd.DataFrame:
    """The pool's inputs under an input shift (unchanged for label shifts)."""
    shifted = pool.copy()
    if shift == "age +8 y":
        shifted["age"] = np.clip(shifted["age"] + 8, 0.08, 120)
    elif shift == "glucose x1.3":
        shifted["avg_glucose_level"] = shifted["avg_glucose_level"] * 1.3
    elif shift == "age-glucose broken":
        # Glucose of a random other patient: each marginal unchanged, the relation gone.
        shifted["avg_glucose_level"] = rng.permutation(shifted["avg_glucose_level"].to_numpy())
    return shifted


def shifted_labels(
    labels: np.ndarray, probabilities: np.ndarray, shift: str, rng: np.random.Generator
) -> np.ndarray:
    """Outcomes under a label shift: the row's own outcome plus added strokes, so that the
    risk becomes 2p (prevalence x2) or logit^-1(logit p + 0.7) (calibration)."""
    p = np.clip(probabilities, 1e-6, 1 - 1e-6)
    if shift == "prevalence x2":
        target = np.minimum(2 * p, 1.0)
    elif shift == "calibration +0.7":
        target = 1 / (1 + np.exp(-(logit(p, floor=0.0) + 0.7)))
    else:
        return labels
    added = rng.random(len(p)) < (target - p) / (1 - p)
    return np.maximum(labels, added.astype(int))


@dataclass
class Traffic:
    """A stream of scored predictions: time (hours), record, probability, label."""

    hours: np.ndarray
    records: list[dict[str, Any]]
    probabilities: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray
    label_hours: np.ndarray


def build_traffic(
    pools: Mapping[str, tuple[list[dict[str, Any]], np.ndarray, np.ndarray]],
    *,
    per_day: int,
    days: float,
    shift: str | None,
    shift_at_hours: float,
    rng: np.random.Generator,
) -> Traffic:
    """Poisson arrivals at per_day; rows from the no-shift pool, then the shift's pool."""
    count = rng.poisson(per_day * days)
    hours = np.sort(rng.uniform(0, days * 24, count))
    shifted = hours >= shift_at_hours if shift is not None else np.zeros(count, dtype=bool)
    records: list[dict[str, Any]] = [{}] * count
    probabilities = np.empty(count)
    labels = np.empty(count, dtype=int)
    for name, chosen in (("none", ~shifted), (shift, shifted)):
        if name is None or not chosen.any():
            continue
        pool_records, pool_probabilities, pool_labels = pools[name]
        rows = rng.integers(len(pool_records), size=int(chosen.sum()))
        for index, row in zip(np.flatnonzero(chosen), rows, strict=True):
            records[index] = pool_records[row]
        probabilities[chosen] = pool_probabilities[rows]
        labels[chosen] = pool_labels[rows]
    labelled = rng.random(count) < LABEL_COVERAGE
    return Traffic(hours, records, probabilities, labels, labelled, hours + LABEL_DELAY_HOURS)


def windows_at(traffic: Traffic, hour: float) -> tuple[LiveWindows, int]:
    """The service's windows at this hour (newest first), and the drift window's start."""
    end = int(np.searchsorted(traffic.hours, hour, side="right"))
    start = max(
        end - DRIFT_WINDOW_RECORDS,
        int(np.searchsorted(traffic.hours, hour - DRIFT_WINDOW_HOURS, side="left")),
    )
    drift = slice(start, end)
    known = traffic.labelled[:end] & (traffic.label_hours[:end] <= hour)
    labelled_index = np.flatnonzero(known)
    performance = labelled_index[-PERFORMANCE_WINDOW_RECORDS:][::-1]
    recent = labelled_index[labelled_index >= start][-DRIFT_WINDOW_RECORDS:][::-1]
    return (
        LiveWindows(
            records=traffic.records[drift][::-1],
            probabilities=traffic.probabilities[drift][::-1].tolist(),
            labelled_probabilities=traffic.probabilities[performance].tolist(),
            labels=traffic.labels[performance].tolist(),
            recent_labelled_probabilities=traffic.probabilities[recent].tolist(),
            recent_labels=traffic.labels[recent].tolist(),
        ),
        start,
    )


# --- replay ------------------------------------------------------------------------------


def replay(
    traffic: Traffic,
    *,
    days: float,
    profile: Mapping[str, Any],
    settings: FigureSettings,
    reference_positive_rate: float,
    durations: Mapping[str, float],
    classifier_hours: float,
    start_hours: float = 0.0,
) -> dict[str, list[float]]:
    """Firing times (hours) of each alert's episodes: every EVALUATION_MINUTES, the
    service's figures, each condition, and its ``for:``."""
    step = EVALUATION_MINUTES / 60
    active_since: dict[str, float | None] = {c.alert: None for c in CONDITIONS}
    firing: dict[str, bool] = {c.alert: False for c in CONDITIONS}
    episodes: dict[str, list[float]] = {c.alert: [] for c in CONDITIONS}
    classifier_value: float | None = None
    classifier_at = -math.inf
    joint_sample = profile.get("joint_sample") or []
    hour = start_hours + step
    while hour <= days * 24 + 1e-9:
        windows, _ = windows_at(traffic, hour)
        figures: list[Figure] = live_figures(profile, windows, settings)
        if hour - classifier_at >= classifier_hours and len(windows.records) >= 200:
            classifier_value = classifier_drift_auc(joint_sample, windows.records)
            classifier_at = hour
        if classifier_value is not None:
            figures.append(Figure("stroke_multivariate_drift_auc", classifier_value))
        values: dict[str, list[float]] = {}
        for figure in figures:
            values.setdefault(figure.name, []).append(figure.value)
        lo, hi = np.searchsorted(traffic.hours, [hour - 0.5, hour], side="right")
        evaluation = Evaluation(
            values,
            scored_30m=int(hi - lo),
            positive_30m=int(np.sum(traffic.probabilities[lo:hi] >= settings.decision_threshold)),
            reference_positive_rate=reference_positive_rate,
        )
        for condition in CONDITIONS:
            name = condition.alert
            if condition.active(evaluation):
                since = active_since[name]
                if since is None:
                    active_since[name] = since = hour
                if not firing[name] and (hour - since) * 60 >= durations[name] - 1e-6:
                    firing[name] = True
                    episodes[name].append(hour)
            else:
                active_since[name], firing[name] = None, False
        hour += step
    return episodes


# --- the report --------------------------------------------------------------------------


def format_table(
    false_alarms: Mapping[int, Mapping[str, float]],
    delays: Mapping[str, Mapping[str, float | None]],
    *,
    days: float,
) -> str:
    header = (
        ["alert"]
        + [f"false alarms / 30 d at {n:,}/day" for n in false_alarms]
        + [f"{shift} (h)" for shift in delays]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for condition in CONDITIONS:
        name = condition.alert
        cells = [f"`{name}`"]
        cells += [f"{false_alarms[n][name] * 30 / days:.1f}" for n in false_alarms]
        for shift in delays:
            delay = delays[shift][name]
            cells.append("–" if delay is None else f"{delay:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_inputs() -> tuple[pd.DataFrame, pd.DataFrame, Any, dict[str, Any], dict[str, Any]]:
    test = pd.read_csv(REPO_ROOT / "data" / "prepared" / "test.csv")
    train = pd.read_csv(REPO_ROOT / "data" / "prepared" / "train.csv")
    model = joblib.load(REPO_ROOT / "models" / "model.joblib")
    profile = json.loads((REPO_ROOT / "models" / "reference_profile.json").read_text())
    metadata = json.loads((REPO_ROOT / "models" / "model_metadata.json").read_text())
    return test, train, model, profile, metadata


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=30.0, help="no-shift days per level")
    parser.add_argument("--null-classifier-hours", type=float, default=12.0)
    parser.add_argument("--shift-classifier-hours", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-readme", action="store_true", help="update monitoring/README.md")
    args = parser.parse_args()
    started = time.perf_counter()
    durations = rule_durations()
    rng = np.random.default_rng(args.seed)
    test, train, model, profile, metadata = load_inputs()
    threshold = float(metadata["decision_threshold"])
    reference_positive_rate = float(metadata["threshold_cv_metrics"]["positive_rate"])
    settings = FigureSettings(
        decision_threshold=threshold,
        min_drift_records=50,
        min_labels=50,
        min_positive_labels=10,
        min_negative_labels=10,
    )
    pool = null_population(test, train, profile, POOL_SIZE, rng)
    pools = {}
    for name in ("none", *SHIFTS):
        inputs = shifted_inputs(pool, name, rng)[list(FEATURE_NAMES)]
        probabilities = model.predict_proba(inputs)[:, 1]
        labels = shifted_labels(pool["stroke"].to_numpy(int), probabilities, name, rng)
        pools[name] = (inputs.to_dict("records"), probabilities, labels)
    population_note = (
        f"the held-out set itself against the reference: {smallest_pvalues(profile, test)}; "
        f"the simulated population ({POOL_SIZE:,} rows with training marginals): "
        f"{smallest_pvalues(profile, pool)}"
    )
    print(
        f"{population_note}; labels {LABEL_COVERAGE:.0%} of predictions, "
        f"{LABEL_DELAY_HOURS:g} h after; figures every {EVALUATION_MINUTES} min",
        flush=True,
    )

    false_alarms: dict[int, dict[str, float]] = {}
    for per_day in TRAFFIC_PER_DAY:
        traffic = build_traffic(
            pools, per_day=per_day, days=args.days, shift=None, shift_at_hours=0, rng=rng
        )
        episodes = replay(
            traffic,
            days=args.days,
            profile=profile,
            settings=settings,
            reference_positive_rate=reference_positive_rate,
            durations=durations,
            classifier_hours=args.null_classifier_hours,
            start_hours=24.0,  # the first day fills the windows
        )
        false_alarms[per_day] = {name: float(len(times)) for name, times in episodes.items()}
        print(
            f"no shift, {per_day:,}/day, {args.days:g} d: "
            + ", ".join(f"{k}={v:g}" for k, v in false_alarms[per_day].items() if v)
            + f" ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        false_alarms[per_day] = {
            name: count * args.days / (args.days - 1)
            for name, count in false_alarms[per_day].items()
        }

    delays: dict[str, dict[str, float | None]] = {}
    shift_at = WARMUP_DAYS * 24
    for shift in SHIFTS:
        traffic = build_traffic(
            pools,
            per_day=SHIFT_TRAFFIC_PER_DAY,
            days=WARMUP_DAYS + SHIFT_DAYS,
            shift=shift,
            shift_at_hours=shift_at,
            rng=rng,
        )
        episodes = replay(
            traffic,
            days=WARMUP_DAYS + SHIFT_DAYS,
            profile=profile,
            settings=settings,
            reference_positive_rate=reference_positive_rate,
            durations=durations,
            classifier_hours=args.shift_classifier_hours,
            start_hours=shift_at - 1.0,
        )
        delays[shift] = {
            name: next((t - shift_at for t in times if t > shift_at), None)
            for name, times in episodes.items()
        }
        print(f"{shift}: done ({time.perf_counter() - started:.0f} s)", flush=True)

    table = format_table(false_alarms, delays, days=args.days)
    note = (
        f"False alarms: alert episodes per 30 days of traffic without shift ({args.days:g} "
        f"simulated days per level, the first day excluded). Shift columns: hours from the "
        f"shift's start to the alert firing, at {SHIFT_TRAFFIC_PER_DAY:,} predictions a day "
        f"(– : not within {SHIFT_DAYS:g} days). Labels: {LABEL_COVERAGE:.0%} of predictions, "
        f"{LABEL_DELAY_HOURS:g} h after them. Figures every {EVALUATION_MINUTES} min; drift "
        f"classifier every {args.null_classifier_hours:g} h (no shift) / "
        f"{args.shift_classifier_hours:g} h (shifts). Traffic: {population_note}. "
        f"Seed {args.seed}; "
        f"{time.perf_counter() - started:.0f} s."
    )
    print()
    print_table(table, note, readme=README if args.write_readme else None, block=README_BLOCK)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
