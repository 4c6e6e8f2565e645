"""The model card (reports/model_card.md), generated from the pipeline's own outputs.

Every number in the card is read from models/model_metadata.json, reports/metrics.json,
reports/evaluation.json or reports/data_summary.json; nothing is typed by hand, so the card
cannot drift from the model it describes. Inputs are read defensively: a missing key is
shown as "n/a" rather than failing, because an older evaluation file should still give a
(partly empty) card. The text is deterministic, so a rerun is byte-identical.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from stroke_risk import paths
from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.evaluation.decision_curve import describe_ranges
from stroke_risk.evaluation.thresholds import THRESHOLD_POLICIES, policy_setting
from stroke_risk.models.explain import source_field
from stroke_risk.models.families import FAMILIES
from stroke_risk.models.pipelines import FEATURE_SETS

# (key, label, higher is better)
PROBABILITY_METRICS = (
    ("roc_auc", "ROC AUC", True),
    ("average_precision", "Average precision (PR AUC)", True),
    ("brier", "Brier score", False),
    ("log_loss", "Log loss", False),
)
THRESHOLD_METRICS = (
    ("recall", "Recall (sensitivity)", True),
    ("specificity", "Specificity", True),
    ("precision", "Precision (PPV)", True),
    ("f1", "F1", True),
    ("positive_rate", "Share flagged positive", None),
)
BASELINE_LABELS = {"prevalence": "Prevalence baseline", "age_only": "Age-only baseline"}
SUBGROUP_COUNTS = (("n", "n"), ("positives", "strokes"))
# Metrics that rest on the strokes in the group: withheld when there are too few of them.
SUBGROUP_STROKE_METRICS = (("roc_auc", "ROC AUC"), ("recall", "recall"), ("precision", "precision"))
SUBGROUP_OTHER_METRICS = (
    ("positive_rate", "share flagged"),
    ("brier", "Brier"),
    ("mean_probability", "mean predicted"),
)
# Fewer positives than this make a subgroup's AUC/recall too noisy to read (the evaluate
# stage marks such groups too_few_positives; older files are judged by this count).
MIN_SUBGROUP_POSITIVES = 10

DATA_PROVENANCE = {
    "brain": (
        "`data/raw/brain.csv`, a cleaned derivative of the public Kaggle *Stroke Prediction "
        "Dataset* (`healthcare-dataset-stroke-data.csv`, 5,110 rows): it has no id column, no "
        "missing bmi, no 'Other' gender and no 'Never_worked' work type. How it was derived "
        "from the original is not documented."
    ),
    "healthcare": (
        "`data/raw/healthcare-dataset-stroke-data.csv`, the public Kaggle *Stroke Prediction "
        'Dataset*. Its publisher gives no source ("confidential source") and restricts it to '
        "educational use."
    ),
}


def lookup(mapping: Any, *keys: str, default: Any = None) -> Any:
    """mapping[k1][k2]... or default when any level is missing or not a mapping."""
    current = mapping
    for key in keys:
        if not isinstance(current, Mapping) or key not in current:
            return default
        current = current[key]
    return current


def metric_value(entry: Any) -> float | None:
    """A metric as a float, whether stored bare or as {value, ci_low, ci_high}."""
    value = entry.get("value") if isinstance(entry, Mapping) else entry
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for the card: fixed decimals, integers as they are, missing as n/a."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    number = metric_value(value)
    return "n/a" if number is None else f"{number:.{digits}f}"


def fmt_percent(value: Any, digits: int = 1) -> str:
    number = metric_value(value)
    return "n/a" if number is None else f"{100 * number:.{digits}f}%"


def fmt_interval(entry: Any) -> str:
    """'0.847 (0.805-0.882)' from {value, ci_low, ci_high}; just the value without a CI."""
    text = fmt(entry)
    low, high = lookup(entry, "ci_low"), lookup(entry, "ci_high")
    low_value, high_value = metric_value(low), metric_value(high)
    if low_value is not None and high_value is not None:
        # "-0.285-0.325" would misread; use "to" when a bound is negative.
        separator = " to " if min(low_value, high_value) < 0 else "-"
        text += f" ({fmt(low)}{separator}{fmt(high)})"
    return text


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    """Markdown table lines."""
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def fields_used(feature_set: str | None) -> list[str]:
    """Input fields a feature set reads (engineered columns counted as their source)."""
    if feature_set not in FEATURE_SETS:
        return list(FEATURE_NAMES)
    used = {source_field(column) for column in FEATURE_SETS[feature_set].columns}
    return [name for name in FEATURE_NAMES if name in used]


def group_sort_key(label: str) -> tuple[float, str]:
    """Order subgroup labels naturally: '<18' before '18-40' before '80+'; text as is."""
    match = re.search(r"\d+(\.\d+)?", label)
    if match is None:
        return (math.inf, label)
    number = float(match.group())
    return (number - 0.5 if label.startswith("<") else number, label)


def baseline_comparison(evaluation: Mapping[str, Any], metric: str = "roc_auc") -> str:
    """One sentence comparing the model with the age-only baseline on the test split."""
    entry = lookup(evaluation, "test", metric)
    age_only = lookup(evaluation, "baselines", "age_only")
    baseline = metric_value(lookup(age_only, "metrics", metric, default=lookup(age_only, metric)))
    value = metric_value(entry)
    low, high = metric_value(lookup(entry, "ci_low")), metric_value(lookup(entry, "ci_high"))
    if value is None or baseline is None:
        return "No age-only baseline comparison is available."
    comparison = f"test ROC AUC {fmt_interval(entry)} against {fmt(baseline)} for age alone"
    if low is not None and high is not None and low <= baseline <= high:
        return (
            f"The model's {comparison}: the baseline lies inside the model's 95% interval, so "
            "this test split cannot show that the other fields add discrimination beyond age."
        )
    verdict = "better" if value > baseline else "worse"
    return f"The model's {comparison}: {verdict} than the age-only baseline."


def no_skill_warning(metrics: Mapping[str, Any], evaluation: Mapping[str, Any]) -> str | None:
    """A plain warning when the model cannot be told apart from chance (ROC AUC 0.5), else None.

    Chance is inside the evidence when the test ROC AUC's 95% interval reaches 0.5, or the
    cross-validated ROC AUC is within two fold standard deviations of 0.5.
    """
    test = lookup(evaluation, "test", "roc_auc")
    test_low = metric_value(lookup(test, "ci_low"))
    cv_mean = metric_value(lookup(metrics, "cv", "roc_auc"))
    cv_sd = metric_value(lookup(metrics, "cv", "roc_auc_std")) or 0.0
    reasons = []
    if test_low is not None and test_low <= 0.5:
        reasons.append(f"its test ROC AUC {fmt_interval(test)} includes 0.5")
    if cv_mean is not None and cv_mean - 2 * cv_sd <= 0.5:
        reasons.append(f"its cross-validated ROC AUC {fmt(cv_mean)} ± {fmt(cv_sd)} reaches 0.5")
    if not reasons:
        return None
    return (
        "**This model has no demonstrated skill:** "
        + " and ".join(reasons)
        + ", the score of a coin toss. Its risk estimates carry no information beyond the "
        "overall prevalence; do not release or serve it."
    )


def summary_section(
    metadata: Mapping[str, Any], metrics: Mapping[str, Any], evaluation: Mapping[str, Any]
) -> list[str]:
    threshold = lookup(evaluation, "threshold", default={}) or {}
    value = threshold.get("value", lookup(metadata, "decision_threshold"))
    ece = lookup(evaluation, "calibration", "ece", default=lookup(metrics, "test", "ece"))
    slope = lookup(evaluation, "calibration", "test", "calibration_slope")
    intercept = lookup(evaluation, "calibration", "test", "calibration_intercept")
    warning = no_skill_warning(metrics, evaluation)
    lines = [
        "## Summary",
        "",
        *([f"- {warning}"] if warning else []),
        f"- {baseline_comparison(evaluation)}",
        f"- At the decision threshold {fmt(value, 4)} the test recall is "
        f"{fmt_interval(lookup(evaluation, 'test', 'recall'))} and the specificity "
        f"{fmt_interval(lookup(evaluation, 'test', 'specificity'))}.",
    ]
    if slope is not None or intercept is not None:
        lines.append(
            f"- Calibration on the test split: slope {fmt_interval(slope)} (ideal 1), intercept "
            f"{fmt_interval(intercept)} (ideal 0); expected calibration error {fmt(ece, 4)}."
        )
    else:
        lines.append(f"- Expected calibration error on the test split: {fmt(ece, 4)}.")
    useful = lookup(evaluation, "decision_curve", "test")
    if isinstance(useful, Mapping):
        lines.append(f"- {decision_sentence(useful, 'test split')}")
    return [*lines, ""]


def intended_use_section() -> list[str]:
    return [
        "## Intended use",
        "",
        "- **Purpose:** estimate a patient's probability of having had a stroke from ten "
        "routinely recorded fields, to help prioritise patients for preventive follow-up "
        "(blood-pressure review, rhythm check for atrial fibrillation, lipid and glucose "
        "management).",
        "- **Intended users:** clinicians and care-coordination staff who review the flagged "
        "patients, and the engineers who operate the service. The score is decision support: "
        "a clinician makes every decision.",
        "- **Not for:** diagnosing an acute stroke (suspected stroke is an emergency, whatever "
        "the score), individual treatment decisions without clinical assessment, populations "
        "unlike the training data, or any non-clinical use such as insurance or employment "
        "decisions.",
        "",
    ]


def data_section(data_summary: Mapping[str, Any], metadata: Mapping[str, Any]) -> list[str]:
    known = data_summary.get("known_dataset")
    path = str(lookup(data_summary, "raw_path", default="unknown"))
    sha = str(lookup(data_summary, "raw_sha256", default=""))[:12]
    provenance = DATA_PROVENANCE.get(
        str(known),
        f"`{path}` (sha256 {sha}…), a file supplied by the user: provenance not recorded.",
    )
    rows = [
        ("Rows after validation", fmt(lookup(data_summary, "n_rows"))),
        ("Strokes (positives)", fmt(lookup(data_summary, "n_positive"))),
        ("Prevalence", fmt_percent(lookup(data_summary, "prevalence"), 2)),
        ("Exact duplicate rows dropped", fmt(lookup(data_summary, "duplicates_dropped"))),
        ("Rows with missing bmi (imputed)", fmt(lookup(data_summary, "bmi_missing"))),
        ("Training split rows", fmt(lookup(data_summary, "n_train"))),
        ("Test split rows (held out, strokes)", _rows_with_positives(data_summary)),
        ("Training data SHA-256", f"`{lookup(metadata, 'training_data_sha256', default='n/a')}`"),
    ]
    return [
        "## Data",
        "",
        f"Source: {provenance}",
        "",
        *table(["", "value"], rows),
        "",
        "Caveats:",
        "",
        "- The data has no atrial fibrillation, blood-pressure values, cholesterol, diabetes "
        "diagnosis, prior stroke/TIA, medication or ethnicity fields, although these are major "
        "stroke risk factors; the model cannot use them and may attribute their effect to "
        "proxies such as age or glucose.",
        "- The label says whether a stroke was recorded, not when: the data is cross-sectional, "
        "so the score estimates association with a recorded stroke, not a prospective "
        "risk over a stated time horizon.",
        "- Strokes are rare, so every test metric rests on few positives; read the confidence "
        "intervals, not just the point estimates.",
        "- Children are included but almost never positive; `smoking_status` is often 'Unknown'.",
        "",
    ]


def _rows_with_positives(data_summary: Mapping[str, Any]) -> str:
    rows, positives = lookup(data_summary, "n_test"), lookup(data_summary, "n_positive_test")
    if rows is None:
        return "n/a"
    return fmt(rows) + ("" if positives is None else f" ({fmt(positives)} strokes)")


def model_section(metadata: Mapping[str, Any]) -> list[str]:
    family = lookup(metadata, "model_family", default="n/a")
    params = lookup(metadata, "params", default={}) or {}
    feature_set = lookup(metadata, "feature_set", default=params.get("feature_set"))
    used = fields_used(feature_set)
    unused = [name for name in FEATURE_NAMES if name not in used]
    lines = [
        "## Model",
        "",
        f"- **Family:** `{family}`, feature set `{feature_set}` (chosen by cross-validation on "
        "the training split).",
        f"- **Fields used:** {', '.join(f'`{n}`' for n in used)}.",
    ]
    if unused:
        lines.append(f"- **Fields accepted but not used:** {', '.join(f'`{n}`' for n in unused)}.")
    lines += [
        f"- **Training rows:** {fmt(lookup(metadata, 'training_rows'))}, prevalence "
        f"{fmt_percent(lookup(metadata, 'training_prevalence'), 2)}.",
        f"- **Artifact:** `{paths.MODEL}`, one scikit-learn pipeline (engineered "
        "features, imputation, scaling, encoding, estimator) that takes the ten raw fields.",
        "",
        *table(
            ["hyperparameter", "value"],
            [(f"`{k}`", f"`{params[k]}`") for k in sorted(params)],
        ),
        "",
    ]
    versions = lookup(metadata, "library_versions", default={}) or {}
    if versions:
        lines += [
            "Library versions: "
            + ", ".join(f"{name} {versions[name]}" for name in sorted(versions))
            + ".",
            "",
        ]
    return lines


def performance_section(metrics: Mapping[str, Any], evaluation: Mapping[str, Any]) -> list[str]:
    test = lookup(evaluation, "test", default={}) or {}
    baselines = lookup(evaluation, "baselines", default={}) or {}
    baseline_names = [name for name in BASELINE_LABELS if name in baselines]
    header = ["metric", "model (95% CI)", *(BASELINE_LABELS[n] for n in baseline_names)]
    header.append("CV on training split")
    rows = []
    for key, label, higher in PROBABILITY_METRICS:
        direction = " (higher is better)" if higher else " (lower is better)"
        row = [label + direction, fmt_interval(test.get(key, lookup(metrics, "test", key)))]
        for name in baseline_names:
            baseline = baselines[name]
            row.append(fmt(lookup(baseline, "metrics", key, default=lookup(baseline, key))))
        cv_value = lookup(metrics, "cv", key)
        cv_std = lookup(metrics, "cv", f"{key}_std")
        row.append(fmt(cv_value) + ("" if cv_std is None else f" ± {fmt(cv_std)}"))
        rows.append(row)
    n_test, positives = lookup(metrics, "test", "n"), lookup(metrics, "test", "positives")
    return [
        "## Performance on the held-out test split",
        "",
        f"Test split: {fmt(n_test)} patients, {fmt(positives)} strokes. Intervals are "
        "95% percentile bootstrap intervals that resample patients (the number of strokes "
        "varies between resamples, as it would between samples). The prevalence baseline predicts "
        "the training prevalence for everyone; the age-only baseline is a logistic regression "
        "on age alone, the bar any richer model has to clear.",
        "",
        *table(header, rows),
        "",
    ]


def internal_validation_section(
    metrics: Mapping[str, Any], evaluation: Mapping[str, Any], figures: Mapping[str, str]
) -> list[str]:
    """Selection optimism of the CV estimate (nested CV) and prediction instability."""
    nested = lookup(evaluation, "internal_validation", "nested_cv", default={}) or {}
    instability = lookup(evaluation, "internal_validation", "instability", default={}) or {}
    cv_auc, cv_std = lookup(metrics, "cv", "roc_auc"), lookup(metrics, "cv", "roc_auc_std")
    nested_auc = lookup(metrics, "cv", "roc_auc_nested")
    nested_std = lookup(metrics, "cv", "roc_auc_nested_std")
    lines = ["## Internal validation (training split)", ""]
    if metric_value(nested_auc) is None:
        lines += ["- No nested cross-validation is available.", ""]
    else:
        best, corrected = metric_value(cv_auc), metric_value(nested_auc)
        optimism = "n/a" if best is None or corrected is None else fmt(best - corrected, 4)
        lines += [
            f"- **Optimism-corrected ROC AUC: {fmt(nested_auc)} ± {fmt(nested_std)}** (nested "
            f"cross-validation), against {fmt(cv_auc)} ± {fmt(cv_std)} for the chosen "
            "hyper-parameters in the tuning CV. The latter is the best trial's score on the "
            f"folds that chose it, so it carries selection optimism (the difference here: "
            f"{optimism}). Method: "
            f"{lookup(nested, 'method', default='n/a')}.",
        ]
    mape = lookup(metrics, "instability", "mape")
    if metric_value(mape) is None:
        lines += ["- No prediction-instability analysis is available.", ""]
        return lines
    lines += [
        f"- **Prediction instability: mean absolute prediction error (MAPE) "
        f"{fmt(mape, 4)}** over {fmt(lookup(instability, 'n_bootstrap'))} bootstrap refits: "
        "on average a training patient's predicted risk moves by this much (absolute "
        "probability) when the model is redeveloped on another sample of the same size. "
        f"Half the patients' 95% ranges are narrower than "
        f"{fmt(lookup(instability, 'range95_width_median'), 4)}, one in ten wider than "
        f"{fmt(lookup(instability, 'range95_width_p90'), 4)}; the largest per-patient MAPE is "
        f"{fmt(lookup(instability, 'mape_max'), 4)}. Method: "
        f"{lookup(instability, 'method', default='n/a')}.",
        "",
    ]
    if "instability" in figures:
        lines += [
            "The instability plot shows, for each training patient, the 95% range of the "
            "bootstrap models' predictions against the developed model's prediction; points "
            "far from the diagonal are predictions the data cannot pin down.",
            "",
            f"![Prediction instability]({figures['instability']})",
            "",
        ]
    return lines


def threshold_section(metadata: Mapping[str, Any], evaluation: Mapping[str, Any]) -> list[str]:
    threshold = lookup(evaluation, "threshold", default={}) or {}
    # evaluation.json repeats the policy's params; metadata is the fallback for older reports.
    settings = {**(lookup(metadata, "threshold_policy", default={}) or {}), **threshold}
    policy = settings.get("policy")
    value = threshold.get("value", lookup(metadata, "decision_threshold"))
    test = lookup(evaluation, "test", default={}) or {}
    known = THRESHOLD_POLICIES.get(str(policy))
    description = known.description if known else f"policy `{policy}`"
    rows = []
    for key, label, _ in THRESHOLD_METRICS:
        cv = threshold.get(f"cv_{key}", lookup(metadata, "threshold_cv_metrics", key))
        rows.append([label, fmt(cv), fmt_interval(test.get(key))])
    shown_setting = (
        f" ({known.setting_label} {fmt(policy_setting(known, settings), 2)})"
        if known and known.setting
        else ""
    )
    return [
        "## Decision threshold",
        "",
        f"A patient is flagged when the predicted probability is at least **{fmt(value, 4)}**. "
        f"Policy `{policy}`{shown_setting}: {description}. The threshold was chosen on out-of-fold "
        "predictions, never on the test split; the test column shows how it transfers.",
        "",
        *table(["at the threshold", "out-of-fold (training)", "test (95% CI)"], rows),
        "",
    ]


CALIBRATION_READING = (
    "The calibration intercept (calibration-in-the-large) is the log-odds shift that would "
    "make the mean prediction match the observed rate: 0 is ideal, above 0 the model "
    "under-predicts, below 0 it over-predicts. The calibration slope is the coefficient of "
    "the model's log-odds in a logistic regression of the outcome on them: 1 is ideal, "
    "below 1 the predictions are too extreme (typical of overfitting), above 1 too timid."
)


def calibration_verdict(slope: Any, intercept: Any) -> str:
    """Plain words on whether the 95 % intervals contain the ideal values."""
    problems = []
    low, high = metric_value(lookup(slope, "ci_low")), metric_value(lookup(slope, "ci_high"))
    if low is not None and high is not None and not low <= 1 <= high:
        problems.append("predictions too extreme" if high < 1 else "predictions too timid")
    low, high = (
        metric_value(lookup(intercept, "ci_low")),
        metric_value(lookup(intercept, "ci_high")),
    )
    if low is not None and high is not None and not low <= 0 <= high:
        problems.append(
            "risk under-predicted overall" if low > 0 else "risk over-predicted overall"
        )
    if metric_value(slope) is None:
        return "not available"
    if problems:
        return "miscalibrated: " + "; ".join(problems)
    return "no evidence of miscalibration (the intervals contain the ideal values)"


def calibration_section(evaluation: Mapping[str, Any], figures: Mapping[str, str]) -> list[str]:
    bins = lookup(evaluation, "calibration", "bins", default=[]) or []
    ece = lookup(evaluation, "calibration", "ece")
    lines = ["## Calibration", ""]
    rows = []
    for split, label in (("cv", "out of fold (training split)"), ("test", "test split")):
        slope = lookup(evaluation, "calibration", split, "calibration_slope")
        intercept = lookup(evaluation, "calibration", split, "calibration_intercept")
        if slope is None and intercept is None:
            continue
        rows.append(
            [
                label,
                fmt_interval(intercept),
                fmt_interval(slope),
                calibration_verdict(slope, intercept),
            ]
        )
    if rows:
        method = lookup(evaluation, "calibration", "intercept_slope_ci_method")
        lines += [
            *table(["predictions", "intercept (95% CI)", "slope (95% CI)", "reading"], rows),
            "",
            CALIBRATION_READING,
            "",
        ]
        if method is not None:
            lines += [f"Intervals of the intercept and slope: {method}.", ""]
    lines += [
        f"Expected calibration error (count-weighted mean |observed - predicted| over "
        f"{len(bins)} equal-count bins of the test split): **{fmt(ece, 4)}**.",
        "",
    ]
    if bins:
        lines += table(
            ["bin", "patients", "mean predicted", "observed stroke rate"],
            [
                (
                    str(index + 1),
                    fmt(row.get("count")),
                    fmt(row.get("mean_predicted"), 4),
                    fmt(row.get("observed_rate"), 4),
                )
                for index, row in enumerate(bins)
            ],
        )
        lines.append("")
    if "calibration" in figures:
        lines += [
            "The figure shows a smoothed calibration curve (logistic regression of the outcome "
            "on a restricted cubic spline of the predicted log-odds) with its 95% bootstrap "
            "band, out of fold and on the test split.",
            "",
            f"![Calibration]({figures['calibration']})",
            "",
        ]
    return lines


def decision_sentence(useful: Mapping[str, Any], where: str) -> str:
    """One sentence on the thresholds where acting on the model beats the defaults."""
    beats = lookup(useful, "beats_defaults", default=[]) or []
    confident = lookup(useful, "confidently_beats_defaults", default=[]) or []
    best = lookup(useful, "max_advantage")
    at = lookup(useful, "max_advantage_threshold")
    text = (
        f"Decision curve ({where}): using the model gives more net benefit than treating "
        f"everyone or no one at threshold probabilities {describe_ranges(beats)}"
    )
    text += f" (95% interval of the gain above 0 at {describe_ranges(confident)})"
    if metric_value(best) is not None and metric_value(at) is not None:
        text += (
            f"; the largest gain is {fmt(best, 4)} net true positives per patient "
            f"({fmt(1000 * float(best), 1)} per 1,000) at {fmt_percent(at, 0)}"
        )
    return text + "."


def decision_curve_section(evaluation: Mapping[str, Any], figures: Mapping[str, str]) -> list[str]:
    curves = lookup(evaluation, "decision_curve", default={}) or {}
    lines = [
        "## Decision curve (net benefit)",
        "",
        "A clinician who would follow up a patient whose stroke probability is at least pt "
        "weighs a needless follow-up as pt/(1-pt) of a found stroke. Net benefit counts true "
        "positives per patient minus false positives weighted that way (Vickers & Elkin, "
        "2006); the model is worth using at pt only if its net benefit beats both treating "
        "everyone and treating no one.",
        "",
    ]
    found = False
    for split, label in (("test", "test split"), ("cv", "out of fold, training split")):
        useful = curves.get(split) if isinstance(curves, Mapping) else None
        if isinstance(useful, Mapping):
            lines.append(f"- {decision_sentence(useful, label)}")
            found = True
    if not found:
        lines.append("- No decision curve is available.")
    lines.append("")
    if "decision_curve" in figures:
        lines += [f"![Decision curve]({figures['decision_curve']})", ""]
    return lines


def subgroup_section(evaluation: Mapping[str, Any]) -> list[str]:
    subgroups = lookup(evaluation, "subgroups", default={}) or {}
    lines = [
        "## Subgroup performance (test split)",
        "",
        f"Values with 95% bootstrap intervals (patients resampled within the group). Groups "
        f"with fewer than {MIN_SUBGROUP_POSITIVES} strokes are marked *: their AUC, recall and "
        "precision are not shown, because a handful of strokes cannot support them (and a "
        "bootstrap of one stroke gives a falsely narrow interval). n/a means the metric is "
        "undefined (e.g. no strokes, or nobody flagged).",
        "",
    ]
    metrics = (*SUBGROUP_STROKE_METRICS, *SUBGROUP_OTHER_METRICS)
    stroke_keys = {key for key, _ in SUBGROUP_STROKE_METRICS}
    for name, groups in subgroups.items():
        if not isinstance(groups, Mapping):
            continue
        rows = []
        for group in sorted(groups, key=lambda label: group_sort_key(str(label))):
            entry = groups[group]
            positives = metric_value(lookup(entry, "positives"))
            too_few = lookup(entry, "too_few_positives")
            if too_few is None:
                too_few = positives is not None and positives < MIN_SUBGROUP_POSITIVES
            cells = [fmt(lookup(entry, key)) for key, _ in SUBGROUP_COUNTS]
            for key, _ in metrics:
                if too_few and key in stroke_keys:
                    cells.append("too few strokes" if positives else "n/a")
                else:
                    cells.append(fmt_interval(lookup(entry, key)))
            rows.append([f"{group}{' *' if too_few else ''}", *cells])
        lines += [f"### By `{name}`", ""]
        header = ["group", *(label for _, label in (*SUBGROUP_COUNTS, *metrics))]
        lines += table(header, rows)
        lines.append("")
    return lines


def explanation_section(metadata: Mapping[str, Any]) -> list[str]:
    family = FAMILIES.get(str(lookup(metadata, "model_family", default="")))
    method = family.explanation if family else "not available for this model family."
    return [
        "## Per-prediction explanations",
        "",
        "The API returns the fields that moved each prediction most, as log-odds "
        f"contributions per input field (`stroke_risk.models.explain`). For this model: {method} "
        "Contributions describe the model, not causes in the patient.",
        "",
    ]


def importance_sentence(importance: list[Mapping[str, Any]]) -> str:
    """Which fields the test-split permutation importance ranks first."""
    ranked = sorted(
        (row for row in importance if metric_value(row.get("importance")) is not None),
        key=lambda row: -float(row["importance"]),
    )
    if not ranked:
        return "- Permutation importance was not available for this card."
    top = ", ".join(f"`{row['feature']}` ({fmt(row['importance'])})" for row in ranked[:3])
    return (
        f"- The score leans most on {top} (drop in test ROC AUC when the field is shuffled). "
        "Patients whose risk comes from factors the model weighs little, or cannot see (see "
        "Data), get low scores."
    )


def limitations_section(
    metrics: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    importance: list[Mapping[str, Any]],
) -> list[str]:
    test_metrics = lookup(metrics, "test", default={}) or {}
    precision = lookup(evaluation, "test", "precision", default=test_metrics.get("precision"))
    flagged = lookup(evaluation, "test", "positive_rate", default=test_metrics.get("positive_rate"))
    return [
        "## Limitations and ethical considerations",
        "",
        f"- At the chosen threshold {fmt_percent(flagged)} of test patients are flagged and "
        f"{fmt_percent(precision)} of those flagged had a stroke: the flag means "
        '"review", not "will have a stroke".',
        importance_sentence(importance),
        "- Subgroup estimates rest on few strokes (groups marked * above): differences "
        "between groups are uncertain and are not, by themselves, evidence of fairness or "
        "unfairness.",
        "- Categories rare or absent in training (such as gender 'Other') are scored, but the "
        "model has learned little or nothing specific about them.",
        "- The population, setting and time of collection are unknown, so calibration in a "
        "new clinic must be checked before the probabilities are trusted; the service's drift "
        "and live-performance monitoring is there to detect a changed population.",
        "- Inputs describe sensitive health data. The service logs predictions for monitoring; "
        "deployments must apply the local rules on consent, retention and access.",
        "",
    ]


def figures_section(figures: Mapping[str, str]) -> list[str]:
    captions = {
        "roc": "ROC curve",
        "pr": "Precision-recall curve",
        "importance": "Feature importance",
    }
    lines = ["## Figures", ""]
    for name, caption in captions.items():
        if name in figures:
            lines += [f"![{caption}]({figures[name]})", ""]
    return lines


def build_model_card(
    *,
    metadata: Mapping[str, Any],
    metrics: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    data_summary: Mapping[str, Any],
    importance: list[Mapping[str, Any]] | None = None,
    figures: Mapping[str, str] | None = None,
) -> str:
    """The model card as Markdown text.

    ``importance`` is the evaluate stage's permutation importance rows ({feature,
    importance}); ``figures`` maps figure names (roc, pr, calibration, decision_curve,
    importance) to paths
    relative to the card. Absent figures are left out.
    """
    figures = figures or {}
    family = lookup(metadata, "model_family", default="unknown")
    lines = [
        f"# Model card: stroke-risk ({family})",
        "",
        "<!-- Generated by the `report` stage (stages/report.py) from "
        f"{paths.MODEL_METADATA}, {paths.METRICS}, {paths.EVALUATION} and {paths.DATA_SUMMARY}."
        " Do not edit by hand: run `dvc repro report`. -->",
        "",
        *summary_section(metadata, metrics, evaluation),
        *intended_use_section(),
        *data_section(data_summary, metadata),
        *model_section(metadata),
        *performance_section(metrics, evaluation),
        *internal_validation_section(metrics, evaluation, figures),
        *threshold_section(metadata, evaluation),
        *calibration_section(evaluation, figures),
        *decision_curve_section(evaluation, figures),
        *subgroup_section(evaluation),
        *explanation_section(metadata),
        *limitations_section(metrics, evaluation, importance or []),
        *figures_section(figures),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
