"""The outcome-label reports: validation of the deployed model and the update decision.

Renders what stages/validate_outcomes.py and stages/update.py computed
(stroke_risk.updating) as flat JSON (their metrics files: `dvc exp show` / `dvc metrics diff`
columns) and as Markdown a reviewer reads (reports/outcomes/*.md, shown by make pr-report).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from stroke_risk.evaluation.metrics import rounded
from stroke_risk.updating.protocol import Decision, EventCount
from stroke_risk.updating.validation import Verdict

NO_LABELS = "no outcome labels yet"
STATISTICS = (
    ("roc_auc", "ROC-AUC", "patient bootstrap"),
    ("calibration_intercept", "calibration in the large", "profile likelihood"),
    ("calibration_slope", "calibration slope", "profile likelihood"),
    ("brier", "Brier score", "patient bootstrap"),
    ("net_benefit", "net benefit at the threshold", "patient bootstrap"),
)


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _estimate(entry: Mapping[str, Any]) -> str:
    return f"{_num(entry['value'])} ({_num(entry['ci_low'])} to {_num(entry['ci_high'])})"


def status_sentence(events: EventCount, other_versions: int) -> str:
    """What the labels allow: nothing yet, too few, or enough."""
    if events.labels == 0:
        text = f"{NO_LABELS}: nothing is validated or updated."
    elif not events.sufficient:
        text = (
            f"too few outcomes yet ({events.events} events, {events.non_events} non-events): "
            f"about {events.more_labels_needed} more labels ({events.more_events_needed} more "
            "events) are needed before validation or updating."
        )
    else:
        text = f"{events.labels} labelled predictions ({events.events} events)."
    if other_versions:
        text += f" {other_versions} labelled predictions of other model versions are not used."
    return text


def validation_document(
    *,
    model_version: str,
    events: EventCount,
    other_versions: int,
    statistics: Mapping[str, Any] | None,
    development: Mapping[str, Any],
    verdict: Verdict | None,
) -> dict[str, Any]:
    """reports/outcomes/validation.json: counts, each statistic with its CI, the verdict."""
    document: dict[str, Any] = {
        "model_version": model_version,
        "labels": events.labels,
        "events": events.events,
        "other_versions_labels": other_versions,
        "more_labels_needed": events.more_labels_needed,
        "status": status_sentence(events, other_versions),
        "development": dict(development),
    }
    if statistics is not None and verdict is not None:
        document["validation"] = dict(statistics)
        document["holds"] = verdict.holds
        document["verdict"] = verdict.sentence
    # Rounded like evaluate's reports: the last digits of the calibration fits follow the
    # machine's BLAS kernel, and dvc.lock must not.
    return cast(dict[str, Any], rounded(document))


def validation_markdown(document: Mapping[str, Any]) -> str:
    """The validation report a reviewer reads."""
    lines = [
        "# Validation on collected outcomes",
        "",
        f"Model version `{document['model_version']}`.",
        "",
    ]
    lines.append(document["status"][0].upper() + document["status"][1:])
    if "validation" not in document:
        return "\n".join(lines) + "\n"
    statistics, development = document["validation"], document["development"]
    lines += [
        "",
        f"**{document['verdict']}**",
        "",
        "| statistic | new outcomes (95% CI) | development test split (95% CI) | CI method |",
        "|---|---|---|---|",
    ]
    for key, label, method in STATISTICS:
        lines.append(
            f"| {label} | {_estimate(statistics[key])} | {_estimate(development[key])} | {method} |"
        )
    lines += [
        "",
        f"ROC-AUC difference (new - development): "
        f"{_estimate(statistics['roc_auc_difference'])}. Prevalence "
        f"{statistics['prevalence']:.3f} (development {development['prevalence']:.3f}); mean "
        f"predicted risk {statistics['mean_predicted']:.3f}. Net benefit of treating everyone "
        f"at the threshold {statistics['decision_threshold']:.3f}: "
        f"{statistics['net_benefit_treat_all']:.4f} (development "
        f"{development['net_benefit_treat_all']:.4f}).",
        "The smoothed calibration curve: reports/plots/outcome_calibration.csv (`dvc plots show`).",
    ]
    return "\n".join(lines) + "\n"


def decision_document(
    decision: Decision, *, model_version: str, other_versions: int, artifacts: str
) -> dict[str, Any]:
    """reports/outcomes/update.json: the method chosen and the evidence for it."""
    document: dict[str, Any] = {
        "model_version": model_version,
        "method": decision.method,
        "updated": decision.updated,
        "reason": decision.reason,
        "status": status_sentence(decision.events, other_versions),
        "labels": decision.events.labels,
        "events": decision.events.events,
        "more_labels_needed": decision.events.more_labels_needed,
        "intercept": decision.recalibration.intercept,
        "slope": decision.recalibration.slope,
        "artifacts": artifacts,
        "notes": list(decision.notes),
    }
    if decision.closed_test is not None:
        document["closed_test"] = [
            {
                "extensive": t.extensive,
                "simpler": t.simpler,
                "statistic": t.statistic,
                "degrees_of_freedom": t.degrees_of_freedom,
                "p_value": t.p_value,
                "significant": t.significant,
            }
            for t in decision.closed_test.tests
        ]
        document["closed_test_method"] = decision.closed_test.method
    if decision.acceptance is not None:
        acceptance = decision.acceptance
        document["held_out"] = {
            "labels": acceptance.labels,
            "events": acceptance.events,
            "log_likelihood_gain": acceptance.log_likelihood_updated
            - acceptance.log_likelihood_deployed,
            "calibration_intercept": acceptance.calibration_intercept,
            "calibration_slope": acceptance.calibration_slope,
            "accepted": acceptance.accepted,
            "failed_criteria": acceptance.failed_criteria,
        }
    return document


def decision_markdown(document: Mapping[str, Any]) -> str:
    """The update report a reviewer reads."""
    lines = [
        "# Update by the change-control plan",
        "",
        f"Model version `{document['model_version']}`. "
        + document["status"][0].upper()
        + document["status"][1:],
        "",
        f"**Decision: {document['method'].replace('_', ' ')}.** {document['reason'][0].upper()}"
        f"{document['reason'][1:]}.",
    ]
    if document.get("closed_test"):
        lines += [
            "",
            "Closed test (Vergouwe et al. 2017), in the order run:",
            "",
            "| test | LR statistic | df | p | significant |",
            "|---|---|---|---|---|",
        ]
        for test in document["closed_test"]:
            lines.append(
                f"| {test['extensive'].replace('_', ' ')} vs {test['simpler'].replace('_', ' ')}"
                f" | {test['statistic']:.2f} | {test['degrees_of_freedom']} | "
                f"{test['p_value']:.3g} | {'yes' if test['significant'] else 'no'} |"
            )
    held = document.get("held_out")
    if held:
        intercept, slope = held["calibration_intercept"], held["calibration_slope"]
        lines += [
            "",
            f"Held-out check ({held['labels']} labels, {held['events']} events): log-likelihood "
            f"gain {held['log_likelihood_gain']:.2f}; calibration in the large "
            f"{_num(intercept['value'])} ({_num(intercept['ci_low'])} to "
            f"{_num(intercept['ci_high'])}); slope {_num(slope['value'])} "
            f"({_num(slope['ci_low'])} to {_num(slope['ci_high'])}): "
            + ("accepted." if held["accepted"] else "rejected."),
        ]
    if document["updated"]:
        lines += [
            "",
            f"New log-odds = {document['intercept']:.4f} + {document['slope']:.4f} x deployed "
            f"log-odds. Artifacts: `{document['artifacts']}`. Release: `make release "
            "VERSION=x.y.z MODEL=updated`, gated on the held-out labels "
            "(reports/outcomes/update_holdout.json).",
        ]
    return "\n".join(lines) + "\n"
