"""The plain-language summary `make run` ends with: is this model any good, in six lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def summary_lines(
    evaluation: Mapping[str, Any], metrics: Mapping[str, Any], data_summary: Mapping[str, Any]
) -> list[str]:
    """Discrimination with its CI against the age-only baseline, the decision rule's recall,
    specificity and share flagged, and where the full story is."""
    test = evaluation["test"]
    auc = test["roc_auc"]
    age_only = evaluation["baselines"]["age_only"]["roc_auc"]
    inside = auc["ci_low"] <= age_only <= auc["ci_high"]
    comparison = (
        "not distinguishable from"
        if inside
        else ("better than" if auc["value"] > age_only else "worse than")
    )
    threshold = evaluation["threshold"]["value"]
    return [
        f"Data: {data_summary['source']} ({data_summary['n_rows']:,} patients, "
        f"{data_summary['n_positive']:,} strokes); tested on {metrics['test']['n']:,} held-out "
        f"patients ({metrics['test']['positives']} strokes) that no fitting or tuning saw.",
        f"Discrimination: ROC-AUC {auc['value']:.3f} (95% CI {auc['ci_low']:.3f}-"
        f"{auc['ci_high']:.3f}); a model on age alone scores {age_only:.3f}, so this model is "
        f"{comparison} the age-only baseline. CV ROC-AUC {metrics['cv']['roc_auc']:.3f} "
        f"± {metrics['cv']['roc_auc_std']:.3f}.",
        f"At the decision threshold {threshold:.3f}: it finds {test['recall']['value']:.0%} of "
        f"strokes (recall), clears {test['specificity']['value']:.0%} of non-strokes "
        f"(specificity) and flags {test['positive_rate']['value']:.0%} of patients; "
        f"{test['precision']['value']:.0%} of flagged patients had a stroke (precision).",
        f"Probabilities: Brier {test['brier']['value']:.4f}, average precision "
        f"{test['average_precision']['value']:.3f} (prevalence "
        f"{data_summary['prevalence']:.1%} is the no-skill level).",
        "Full story: reports/model_card.md; every metric key: README 'Metric glossary'; "
        "compare experiments: make exps (what each changed), make compare (paired tests).",
    ]
