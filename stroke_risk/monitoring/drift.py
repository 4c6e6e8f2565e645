"""Drift of a live window of records against the training reference profile.

Pure functions: no I/O, no global state. The reference profile is the dict written by
``stroke_risk.data.features.build_reference_profile`` (see docs/CONTRACTS.md); a live window is a
list of records, each a mapping of the ten schema fields to their values (``bmi`` may be
``None``).

Per feature we report:

- PSI over the reference's fixed bins (numeric: ``bin_edges``/``bin_shares``; categorical
  and binary: ``category_shares``). Shares are floored at ``PSI_EPSILON`` before the
  logarithm so an empty bin adds a large but finite term instead of infinity.
- a p-value: two-sample KS against the reference ``sample`` for numeric fields, chi-square
  of a 2 x k contingency table (reference counts vs live counts) for categorical and binary.
- the missing-value rate and, for categorical and binary fields, the share of values in a
  category the reference never saw (share 0 or absent from the profile).

PSI and the tests use the non-missing values only, because the reference bins and shares
describe present values; missingness is reported separately as ``missing_rate``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

from stroke_risk.data.schema import FEATURE_NAMES

# Floor for a bin share inside the PSI logarithm. 1e-4 keeps one empty reference-sized
# bin (share 0.1) from dominating the score more than ~0.1 * ln(0.1 / 1e-4) = 0.69,
# which is still far above the 0.2 alert level, so a genuinely empty bin is visible.
PSI_EPSILON = 1e-4

# PSI bands (monitoring/README.md): up to 0.1 stable, 0.1-0.2 moderate, above 0.2
# significant (the StrokeFeatureDrift alert's threshold).
PSI_MODERATE, PSI_SIGNIFICANT = 0.1, 0.2

DriftTest = Literal["ks", "chi2"]
PsiBand = Literal["stable", "moderate", "significant"]


def psi_band(psi: float) -> PsiBand:
    """The PSI band a value falls in (PSI_MODERATE and PSI_SIGNIFICANT are exclusive bounds)."""
    if psi > PSI_SIGNIFICANT:
        return "significant"
    return "moderate" if psi > PSI_MODERATE else "stable"


@dataclass(frozen=True)
class FeatureDrift:
    """Drift statistics of one feature over a live window.

    ``psi`` and ``pvalue`` are ``None`` when the window holds no non-missing value of the
    feature; ``unseen_category_rate`` is ``None`` for numeric features.
    """

    feature: str
    kind: str
    test: DriftTest
    values: int
    psi: float | None
    pvalue: float | None
    missing_rate: float
    unseen_category_rate: float | None


@dataclass(frozen=True)
class DriftReport:
    """Drift of every profiled feature; ``drift_score`` is the largest PSI (None if none)."""

    window_records: int
    features: dict[str, FeatureDrift]
    drift_score: float | None


def is_missing(value: Any) -> bool:
    """True for None and float NaN, the two spellings of 'missing' in a record."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def population_stability_index(
    expected_shares: Sequence[float],
    actual_shares: Sequence[float],
    *,
    epsilon: float = PSI_EPSILON,
) -> float:
    """PSI = sum((actual - expected) * ln(actual / expected)) over aligned bins.

    Both share vectors are floored at ``epsilon`` (not renormalised) so empty bins yield a
    finite value. Returns 0.0 for identical distributions.
    """
    if len(expected_shares) != len(actual_shares):
        raise ValueError(
            f"share vectors differ in length: {len(expected_shares)} vs {len(actual_shares)}"
        )
    expected = np.maximum(np.asarray(expected_shares, dtype=float), epsilon)
    actual = np.maximum(np.asarray(actual_shares, dtype=float), epsilon)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def numeric_bin_shares(values: Sequence[float], bin_edges: Sequence[float]) -> list[float]:
    """Share of values in each of the len(bin_edges)+1 bins.

    Uses the same convention as the reference profile (``searchsorted(side="right")``):
    bin i holds edges[i-1] <= v < edges[i]. Returns all zeros for an empty input.
    """
    counts = np.bincount(
        np.searchsorted(
            np.asarray(bin_edges, dtype=float), np.asarray(values, dtype=float), "right"
        ),
        minlength=len(bin_edges) + 1,
    )
    total = counts.sum()
    return [float(c) / total if total else 0.0 for c in counts]


def category_key(value: Any) -> str:
    """Category label as the profile spells it: integral numbers as '0'/'1', else str()."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def category_counts(values: Sequence[Any]) -> dict[str, int]:
    """Count of each category label (keys normalised by category_key)."""
    counts: dict[str, int] = {}
    # Count the raw values first (a window holds few distinct ones), then normalise keys.
    for value, count in Counter(values).items():
        key = category_key(value)
        counts[key] = counts.get(key, 0) + count
    return counts


def categorical_psi(
    counts: Mapping[str, int],
    reference_shares: Mapping[str, float],
    *,
    epsilon: float = PSI_EPSILON,
) -> float:
    """PSI over the union of reference categories and categories seen live."""
    categories = list(reference_shares) + [c for c in counts if c not in reference_shares]
    total = sum(counts.values())
    actual = [counts.get(c, 0) / total if total else 0.0 for c in categories]
    expected = [float(reference_shares.get(c, 0.0)) for c in categories]
    return population_stability_index(expected, actual, epsilon=epsilon)


def ks_pvalue(values: Sequence[float], reference_sample: Sequence[float]) -> float | None:
    """Two-sample Kolmogorov-Smirnov p-value (scipy.stats.ks_2samp); None if either is empty."""
    if len(values) == 0 or len(reference_sample) == 0:
        return None
    return float(stats.ks_2samp(values, reference_sample).pvalue)


def chi_square_pvalue(
    counts: Mapping[str, int],
    reference_shares: Mapping[str, float],
    reference_rows: int,
) -> float | None:
    """Chi-square p-value of a 2 x k table: reference counts vs live counts.

    Reference counts are reconstructed as round(share * reference_rows), so the test
    accounts for the reference being a finite sample too. Categories empty in both rows
    are dropped (they carry no information and would make expected counts zero). With
    fewer than two remaining categories there is nothing to compare and the p-value is
    1.0. Returns None for an empty window. Yates' correction applies to 2 x 2 tables, as
    in scipy.stats.chi2_contingency.
    """
    if sum(counts.values()) == 0:
        return None
    categories = list(reference_shares) + [c for c in counts if c not in reference_shares]
    reference_counts = [
        round(float(reference_shares.get(c, 0.0)) * reference_rows) for c in categories
    ]
    live_counts = [counts.get(c, 0) for c in categories]
    table = np.array(
        [(r, live) for r, live in zip(reference_counts, live_counts, strict=True) if r + live > 0],
        dtype=float,
    ).T
    if table.ndim != 2 or table.shape[1] < 2 or table[0].sum() == 0:
        return 1.0
    return float(stats.chi2_contingency(table).pvalue)


def unseen_category_rate(counts: Mapping[str, int], reference_shares: Mapping[str, float]) -> float:
    """Share of values whose category has reference share 0 or is absent from the profile."""
    total = sum(counts.values())
    if total == 0:
        return 0.0
    unseen = sum(n for c, n in counts.items() if float(reference_shares.get(c, 0.0)) <= 0.0)
    return unseen / total


def binned_numeric_drift(
    feature_profile: Mapping[str, Any],
    bin_indices: Sequence[int],
    *,
    reference_rows: int,
    missing_rate: float,
    epsilon: float = PSI_EPSILON,
) -> FeatureDrift:
    """Drift of a numeric feature logged as reference-bin indices (no raw values).

    PSI is the same as from raw values (the same bins); the p-value is a chi-square test
    of the bin counts instead of KS, which needs the values themselves.
    """
    shares = {str(i): float(s) for i, s in enumerate(feature_profile["bin_shares"])}
    counts = category_counts([int(i) for i in bin_indices])
    reference_present = round(
        reference_rows * (1.0 - float(feature_profile.get("missing_rate", 0.0)))
    )
    return FeatureDrift(
        feature=str(feature_profile["name"]),
        kind="numeric",
        test="chi2",
        values=len(bin_indices),
        psi=categorical_psi(counts, shares, epsilon=epsilon) if bin_indices else None,
        pvalue=chi_square_pvalue(counts, shares, reference_present),
        missing_rate=missing_rate,
        unseen_category_rate=None,
    )


def feature_drift(
    feature_profile: Mapping[str, Any],
    values: Sequence[Any],
    *,
    reference_rows: int,
    epsilon: float = PSI_EPSILON,
    binned: bool = False,
) -> FeatureDrift:
    """Drift statistics of one feature's live values (missing values included).

    binned: numeric values are reference-bin indices (stroke_risk.monitoring.live.bin_record).
    """
    name = str(feature_profile["name"])
    kind = str(feature_profile["kind"])
    present = [v for v in values if not is_missing(v)]
    missing_rate = (len(values) - len(present)) / len(values) if values else 0.0
    if kind == "numeric" and binned:
        return binned_numeric_drift(
            feature_profile,
            present,
            reference_rows=reference_rows,
            missing_rate=missing_rate,
            epsilon=epsilon,
        )
    if kind == "numeric":
        numbers = [float(v) for v in present]
        psi = (
            population_stability_index(
                feature_profile["bin_shares"],
                numeric_bin_shares(numbers, feature_profile["bin_edges"]),
                epsilon=epsilon,
            )
            if numbers
            else None
        )
        return FeatureDrift(
            feature=name,
            kind=kind,
            test="ks",
            values=len(numbers),
            psi=psi,
            pvalue=ks_pvalue(numbers, feature_profile["sample"]),
            missing_rate=missing_rate,
            unseen_category_rate=None,
        )
    shares: Mapping[str, float] = feature_profile["category_shares"]
    counts = category_counts(present)
    # The profile's shares are of present values; scale the row count to match.
    reference_present = round(
        reference_rows * (1.0 - float(feature_profile.get("missing_rate", 0.0)))
    )
    return FeatureDrift(
        feature=name,
        kind=kind,
        test="chi2",
        values=len(present),
        psi=categorical_psi(counts, shares, epsilon=epsilon) if present else None,
        pvalue=chi_square_pvalue(counts, shares, reference_present),
        missing_rate=missing_rate,
        unseen_category_rate=unseen_category_rate(counts, shares),
    )


def ordered_feature_names(reference_profile: Mapping[str, Any]) -> list[str]:
    """Profiled feature names, schema fields first in schema order, then any extras."""
    profiled = reference_profile["features"]
    return [n for n in FEATURE_NAMES if n in profiled] + sorted(
        n for n in profiled if n not in FEATURE_NAMES
    )


def compute_drift(
    reference_profile: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    *,
    epsilon: float = PSI_EPSILON,
    binned: bool = False,
) -> DriftReport:
    """Drift of a live window (list of records) against the reference profile.

    A field absent from a record counts as missing. An empty window yields a report whose
    PSI and p-values are all None. binned: the records come from a log that keeps
    reference-bin indices instead of numeric values (see binned_numeric_drift).
    """
    reference_rows = int(reference_profile["n_rows"])
    features: dict[str, FeatureDrift] = {}
    for name in ordered_feature_names(reference_profile):
        values = [record.get(name) for record in records]
        features[name] = feature_drift(
            reference_profile["features"][name],
            values,
            reference_rows=reference_rows,
            epsilon=epsilon,
            binned=binned,
        )
    psis = [f.psi for f in features.values() if f.psi is not None]
    return DriftReport(
        window_records=len(records),
        features=features,
        drift_score=max(psis) if psis else None,
    )


# --- relationships between numeric fields ------------------------------------------------

# Spearman's atanh(rho) has variance about 1.06 / (n - 3) (Fieller, Hartley & Pearson 1957).
SPEARMAN_VARIANCE_FACTOR = 1.06


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho of a pair and the number of rows where both values are present."""

    rho: float
    rows: int


def rank_correlation(first: np.ndarray, second: np.ndarray) -> RankCorrelation | None:
    """Spearman's rho over rows where both are present; None below 4 rows or no spread.

    The live side of the profile's ``correlations``
    (stroke_risk.data.features.reference_correlations,
    the same ranks with ties averaged)."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    present = ~(np.isnan(first) | np.isnan(second))
    rows = int(present.sum())
    if rows < 4 or np.ptp(first[present]) == 0 or np.ptp(second[present]) == 0:
        return None
    return RankCorrelation(float(stats.spearmanr(first[present], second[present]).statistic), rows)


def correlation_change_pvalue(live: RankCorrelation, reference: RankCorrelation) -> float:
    """Two-sided p-value of 'the same rank correlation' (Fisher z of two independent samples,
    each side's variance SPEARMAN_VARIANCE_FACTOR / (rows - 3))."""
    clip = 1 - 1e-9
    difference = math.atanh(max(-clip, min(clip, live.rho))) - math.atanh(
        max(-clip, min(clip, reference.rho))
    )
    standard_error = math.sqrt(
        SPEARMAN_VARIANCE_FACTOR * (1 / (live.rows - 3) + 1 / (reference.rows - 3))
    )
    return float(2 * stats.norm.sf(abs(difference) / standard_error))
