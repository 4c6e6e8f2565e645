"""The summary `make run` prints answers "is this model any good?" from the reports."""

import copy
import re
from pathlib import Path

from stroke_risk.reports.summary import summary_lines

EVALUATION = {
    "test": {
        "roc_auc": {"value": 0.85, "ci_low": 0.80, "ci_high": 0.88},
        "recall": {"value": 0.8},
        "specificity": {"value": 0.73},
        "positive_rate": {"value": 0.29},
        "precision": {"value": 0.14},
        "brier": {"value": 0.044},
        "average_precision": {"value": 0.17},
    },
    "baselines": {"age_only": {"roc_auc": 0.851}},
    "threshold": {"value": 0.05},
}
METRICS = {"test": {"n": 997, "positives": 50}, "cv": {"roc_auc": 0.842, "roc_auc_std": 0.024}}
DATA = {"source": "brain.csv", "n_rows": 4981, "n_positive": 248, "prevalence": 0.0498}


def test_summary_compares_with_the_age_only_baseline_inside_the_interval():
    text = "\n".join(summary_lines(EVALUATION, METRICS, DATA))
    assert "not distinguishable from the age-only baseline" in text
    assert "ROC-AUC 0.850 (95% CI 0.800-0.880)" in text
    assert "finds 80% of strokes" in text and "flags 29% of patients" in text
    assert "reports/model_card.md" in text


def test_summary_says_better_when_the_baseline_is_below_the_interval():
    evaluation = copy.deepcopy(EVALUATION)
    evaluation["baselines"]["age_only"]["roc_auc"] = 0.70
    assert "better than the age-only baseline" in "\n".join(
        summary_lines(evaluation, METRICS, DATA)
    )


def test_the_pointer_to_comparing_experiments_names_make_targets_that_exist():
    """It used to point at `dvc exp show --only-changed`, unreadable at 100 columns."""
    pointer = summary_lines(EVALUATION, METRICS, DATA)[-1]
    targets = re.findall(r"make ([a-z-]+)", pointer.split("compare experiments:", 1)[1])
    assert targets == ["exps", "compare"]
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    assert "dvc exp show" not in pointer
