"""The threshold policies: one record per way of choosing the decision threshold.

Each record holds everything the project knows about a policy: how it picks a threshold
from out-of-fold scores, the sentence the model card uses to describe it, the one
`threshold.*` setting it reads (shown next to its name in the changelog, the card and the PR
report) and the plain-language sentence of the clinician page. `stroke_risk.params` takes
its allowed names from this table, so adding a policy is adding a record here (CONTRIBUTING.md,
"Files to touch").

Imports only numpy: `stroke_risk/params.py` (the ground floor) reads the names from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OperatingPoints:
    """Every distinct threshold of a set of scores with its confusion counts.

    `candidates` are the observed scores in descending order; entry i of the counts is for
    flagging every score >= candidates[i], so recall grows with i.
    """

    candidates: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    positives: int
    negatives: int

    @property
    def recall(self) -> np.ndarray:
        return self.true_positives / self.positives


@dataclass(frozen=True)
class PolicySettings:
    """The `threshold.*` params a policy may read (stroke_risk.params.ThresholdParams)."""

    target_recall: float
    harm_benefit_ratio: float | None = None


@dataclass(frozen=True)
class ThresholdPolicy:
    """One threshold policy: its selection rule and how every report describes it.

    `select` returns the index into `OperatingPoints.candidates` of the chosen threshold
    (np.argmax picks the first, i.e. highest, threshold on ties). `setting` names the
    PolicySettings field the policy reads (None: it reads none), `setting_label` how reports
    name it. `clinician_sentence` receives that setting's value (None for no setting).
    """

    name: str
    description: str
    select: Callable[[OperatingPoints, PolicySettings], int]
    clinician_sentence: Callable[[float | None], str]
    setting: str | None = None
    setting_label: str = ""


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value * 100:.0f}%"


def _select_min_recall(points: OperatingPoints, settings: PolicySettings) -> int:
    meeting = np.nonzero(points.recall >= settings.target_recall)[0]
    return int(meeting[0]) if len(meeting) else len(points.candidates) - 1


def _select_max_f1(points: OperatingPoints, settings: PolicySettings) -> int:
    tp, fp = points.true_positives, points.false_positives
    f1 = 2 * tp / (2 * tp + fp + (points.positives - tp))
    return int(np.argmax(f1))


def _select_youden(points: OperatingPoints, settings: PolicySettings) -> int:
    youden = points.recall - points.false_positives / points.negatives
    return int(np.argmax(youden))


def _select_net_benefit(points: OperatingPoints, settings: PolicySettings) -> int:
    ratio = settings.harm_benefit_ratio
    if ratio is None or not ratio > 0:
        raise ValueError(
            "threshold.harm_benefit_ratio must be a positive number for policy "
            f"net_benefit, got {ratio!r}"
        )
    benefit = points.true_positives - points.false_positives * ratio
    return int(np.argmax(benefit))


THRESHOLD_POLICIES: dict[str, ThresholdPolicy] = {
    policy.name: policy
    for policy in (
        ThresholdPolicy(
            name="min_recall",
            description=(
                "the highest threshold whose out-of-fold recall on the training split is at "
                "least the target recall, i.e. the most specific rule that meets the "
                "sensitivity target"
            ),
            select=_select_min_recall,
            setting="target_recall",
            setting_label="target recall",
            clinician_sentence=lambda target: (
                "This threshold was chosen on the training data to flag at least "
                f"{_percent(target)} of patients with a recorded stroke, "
                "accepting more false alarms in exchange."
            ),
        ),
        ThresholdPolicy(
            name="max_f1",
            description="the threshold that maximises out-of-fold F1 on the training split",
            select=_select_max_f1,
            clinician_sentence=lambda _: (
                "This threshold was chosen on the training data to balance missed strokes "
                "against false alarms among the flagged patients (best F1 score)."
            ),
        ),
        ThresholdPolicy(
            name="youden",
            description="the threshold that maximises out-of-fold sensitivity + specificity - 1",
            select=_select_youden,
            clinician_sentence=lambda _: (
                "This threshold was chosen on the training data to make sensitivity plus "
                "specificity as large as possible."
            ),
        ),
        ThresholdPolicy(
            name="net_benefit",
            description=(
                "the threshold that maximises out-of-fold net benefit at the stated "
                "harm/benefit ratio (the harm of a needless follow-up relative to the benefit "
                "of finding a stroke)"
            ),
            select=_select_net_benefit,
            setting="harm_benefit_ratio",
            setting_label="harm/benefit ratio",
            clinician_sentence=lambda ratio: (
                "This threshold was chosen on the training data for the largest net benefit, "
                f"counting a needless follow-up as {ratio} of the benefit of finding a stroke."
            ),
        ),
    )
}
THRESHOLD_POLICY_NAMES: tuple[str, ...] = tuple(THRESHOLD_POLICIES)


def threshold_policy(name: str) -> ThresholdPolicy:
    """The record of policy `name`; ValueError naming the known policies otherwise."""
    try:
        return THRESHOLD_POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown threshold policy {name!r}; expected one of {', '.join(THRESHOLD_POLICIES)}"
        ) from None


def policy_setting(policy: ThresholdPolicy, settings: Mapping[str, Any]) -> Any:
    """The value of the setting `policy` reads from a `threshold` mapping (None if none)."""
    return None if policy.setting is None else settings.get(policy.setting)


def operating_points(y_true: np.ndarray, probability: np.ndarray) -> OperatingPoints:
    """Confusion counts at every observed score, highest threshold first."""
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=float)
    candidates = np.unique(probability)[::-1]  # descending: recall grows as we go
    positives = int(y_true.sum())
    order = np.argsort(-probability, kind="stable")
    sorted_scores = probability[order]
    sorted_labels = y_true[order]
    # True/false positives when predicting positive for score >= candidate.
    cumulative_tp = np.cumsum(sorted_labels)
    cumulative_fp = np.cumsum(1 - sorted_labels)
    last_index = np.searchsorted(-sorted_scores, -candidates, side="right") - 1
    return OperatingPoints(
        candidates=candidates,
        true_positives=cumulative_tp[last_index],
        false_positives=cumulative_fp[last_index],
        positives=positives,
        negatives=len(y_true) - positives,
    )


def select_threshold(
    y_true: np.ndarray,
    probability: np.ndarray,
    *,
    policy: str,
    target_recall: float,
    harm_benefit_ratio: float | None = None,
) -> float:
    """Pick a decision threshold from (out-of-fold) scores with the named policy.

    The policies are the records of THRESHOLD_POLICIES. Candidate thresholds are the
    observed scores, so the result is one of them.
    """
    chosen = threshold_policy(policy)
    points = operating_points(y_true, probability)
    settings = PolicySettings(target_recall=target_recall, harm_benefit_ratio=harm_benefit_ratio)
    return float(points.candidates[chosen.select(points, settings)])
