"""Offline drift report: a CSV or a prediction-log window vs the training reference, as HTML.

One self-contained HTML page (no network, no live service), written by the command:

    python -m stroke_risk.commands.drift_report --data new_patients.csv --out drift-report.html
    python -m stroke_risk.commands.drift_report --log var/monitoring/predictions.sqlite --since 24h

The figures are the service's own: per-field PSI, KS or chi-square p-value, missing and
unseen-category rates from stroke_risk.monitoring.drift.compute_drift, and the multivariate drift
classifier's AUC from stroke_risk.monitoring.live.classifier_drift_auc, all against
models/reference_profile.json (the profile the service compares its live window with).
``build_drift_report`` is pure computation; ``render_html`` turns its result into the page
(figures drawn to inline SVG by vl-convert, so the page has no script and loads nothing);
stroke_risk.commands.drift_report reads the inputs and writes the page.

A log written with STROKE_MONITOR_STORE=binned keeps reference-bin indices instead of the
numbers; its report has chi-square p-values for numeric fields and no multivariate figure,
as in the service. The page holds shares per reference bin and category, never a record.
"""

from __future__ import annotations

import html
import json
import math
import random
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stroke_risk import paths
from stroke_risk.data.load import read_raw_csv, validate_raw_frame
from stroke_risk.data.schema import FEATURE_NAMES, FEATURES, NumericField
from stroke_risk.monitoring.drift import (
    PSI_EPSILON,
    FeatureDrift,
    PsiBand,
    category_counts,
    compute_drift,
    is_missing,
    numeric_bin_shares,
    psi_band,
)
from stroke_risk.monitoring.live import check_reference_profile, classifier_drift_auc

DEFAULT_REFERENCE = Path(paths.REFERENCE_PROFILE)
DEFAULT_OUTPUT = Path("drift-report.html")
# The drift classifier is fitted on at most this many current records (a seeded sample):
# beyond a few thousand rows its AUC barely moves, while the fit time keeps growing.
CLASSIFIER_MAX_RECORDS = 10_000
NUMERIC_FIELDS = tuple(spec.name for spec in FEATURES if isinstance(spec, NumericField))
REFERENCE_COLOUR, CURRENT_COLOUR = "#8c8c8c", "#d4572a"


class DriftReportError(Exception):
    """A reason no report can be written, as one line naming the input and the problem."""


# --- the report: pure computation ----------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """Shares of present values per reference bin (numeric) or category, both sides."""

    labels: list[str]
    reference_shares: list[float]
    current_shares: list[float]


@dataclass(frozen=True)
class FieldReport:
    drift: FeatureDrift
    distribution: Distribution
    band: PsiBand | None  # None when the field has no present value


@dataclass(frozen=True)
class OfflineDriftReport:
    """Everything the page shows; ``multivariate_note`` says why the AUC is None, if it is."""

    source: str
    records: int
    reference_rows: int
    binned: bool
    fields: list[FieldReport]
    drift_score: float | None
    multivariate_auc: float | None
    multivariate_records: int
    multivariate_note: str | None

    def significant_fields(self) -> list[str]:
        return [f.drift.feature for f in self.fields if f.band == "significant"]


def format_edge(value: float) -> str:
    return f"{value:.4g}"


def numeric_bin_labels(bin_edges: Sequence[float]) -> list[str]:
    """Labels of the len(bin_edges)+1 bins: '< e0', '[e0, e1)', ..., '>= en' (half-open as
    stroke_risk.monitoring.drift.numeric_bin_shares counts them)."""
    edges = [format_edge(float(e)) for e in bin_edges]
    if not edges:
        return ["all"]
    middle = [f"[{low}, {high})" for low, high in zip(edges, edges[1:], strict=False)]
    return [f"< {edges[0]}", *middle, f">= {edges[-1]}"]


def field_distribution(
    feature_profile: Mapping[str, Any], values: Sequence[Any], *, binned: bool
) -> Distribution:
    """Reference and current shares of one field's present values, on the reference's bins
    (numeric) or over the reference's categories plus any unseen ones (in order seen)."""
    present = [v for v in values if not is_missing(v)]
    if feature_profile["kind"] == "numeric":
        edges = feature_profile["bin_edges"]
        if binned:
            counts = category_counts([int(v) for v in present])
            current = [
                counts.get(str(i), 0) / len(present) if present else 0.0
                for i in range(len(edges) + 1)
            ]
        else:
            current = numeric_bin_shares([float(v) for v in present], edges)
        return Distribution(
            labels=numeric_bin_labels(edges),
            reference_shares=[float(s) for s in feature_profile["bin_shares"]],
            current_shares=current,
        )
    reference_shares: Mapping[str, float] = feature_profile["category_shares"]
    counts = category_counts(present)
    labels = list(reference_shares) + [c for c in counts if c not in reference_shares]
    return Distribution(
        labels=labels,
        reference_shares=[float(reference_shares.get(c, 0.0)) for c in labels],
        current_shares=[counts.get(c, 0) / len(present) if present else 0.0 for c in labels],
    )


def build_drift_report(
    reference_profile: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    *,
    source: str,
    binned: bool = False,
    classifier_max_records: int = CLASSIFIER_MAX_RECORDS,
    seed: int = 0,
) -> OfflineDriftReport:
    """The drift of ``records`` against the reference profile, as the service computes it.

    Raises ValueError if the profile lacks what drift needs or the window is empty. The
    multivariate AUC uses the profile's joint sample and at most classifier_max_records
    current records (a seeded sample); it is None, with the reason in multivariate_note,
    for a binned log, a profile without a joint sample, or too few records.
    """
    check_reference_profile(reference_profile)
    if not records:
        raise ValueError("no records to compare with the reference")
    drift = compute_drift(reference_profile, records, epsilon=PSI_EPSILON, binned=binned)
    fields = [
        FieldReport(
            drift=feature,
            distribution=field_distribution(
                reference_profile["features"][name],
                [record.get(name) for record in records],
                binned=binned,
            ),
            band=None if feature.psi is None else psi_band(feature.psi),
        )
        for name, feature in drift.features.items()
    ]
    joint_sample = reference_profile.get("joint_sample") or []
    sample = list(records)
    if len(sample) > classifier_max_records:
        sample = random.Random(seed).sample(sample, classifier_max_records)
    auc: float | None = None
    note: str | None = None
    if binned:
        note = "not available: a binned prediction log keeps no raw values"
    elif not joint_sample:
        note = "not available: the reference profile has no joint_sample"
    else:
        auc = classifier_drift_auc(joint_sample, sample, seed=seed)
        if auc is None:
            note = "not available: too few records for the cross-validated classifier"
    return OfflineDriftReport(
        source=source,
        records=len(records),
        reference_rows=int(reference_profile["n_rows"]),
        binned=binned,
        fields=fields,
        drift_score=drift.drift_score,
        multivariate_auc=auc,
        multivariate_records=0 if auc is None else len(sample),
        multivariate_note=note,
    )


def format_pvalue(pvalue: float | None) -> str:
    if pvalue is None:
        return "-"
    return "< 1e-300" if pvalue == 0.0 else f"{pvalue:.3g}"


def format_share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def summary_text(report: OfflineDriftReport) -> str:
    """The few lines the command prints: records, each field's PSI and band, the AUC."""
    lines = [
        f"{report.source}: {report.records:,} records against {report.reference_rows:,}"
        " training rows",
        "field                PSI     band         test  p-value",
    ]
    for field in report.fields:
        drift = field.drift
        psi = "-" if drift.psi is None else f"{drift.psi:.3f}"
        lines.append(
            f"{drift.feature:<20} {psi:>6}  {field.band or '-':<11}  {drift.test:<4}"
            f"  {format_pvalue(drift.pvalue)}"
        )
    auc = report.multivariate_auc
    lines.append(
        "multivariate drift classifier AUC: "
        + (f"{auc:.3f} (0.5: indistinguishable from training)" if auc is not None else "")
        + (report.multivariate_note or "")
    )
    return "\n".join(lines)


# --- the page -------------------------------------------------------------------------------

PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.significant { color: #b3261e; font-weight: 600; } .moderate { color: #a15c00; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5rem; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 0.3rem; }
.note { color: #555; max-width: 60rem; }
"""


def distribution_spec(field: FieldReport) -> dict[str, Any]:
    """Vega-Lite spec of one field's reference vs current shares (grouped bars)."""
    distribution = field.distribution
    rows = [
        {"bin": label, "order": position, "data": side, "share": share}
        for position, label in enumerate(distribution.labels)
        for side, share in (
            ("training reference", distribution.reference_shares[position]),
            ("current", distribution.current_shares[position]),
        )
    ]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": rows},
        "width": {"step": 14},
        "height": 160,
        "mark": "bar",
        "encoding": {
            "x": {
                "field": "bin",
                "type": "nominal",
                "sort": {"field": "order"},
                "title": None,
                "axis": {"labelAngle": -45, "labelLimit": 120},
            },
            "xOffset": {"field": "data"},
            "y": {
                "field": "share",
                "type": "quantitative",
                "title": "share of present values",
                "axis": {"format": ".0%"},
            },
            "color": {
                "field": "data",
                "title": None,
                "scale": {
                    "domain": ["training reference", "current"],
                    "range": [REFERENCE_COLOUR, CURRENT_COLOUR],
                },
                "legend": {"orient": "top"},
            },
        },
    }


def multivariate_spec(auc: float) -> dict[str, Any]:
    """Vega-Lite spec of the drift classifier's AUC on its 0.5 (no drift) to 1 scale."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "width": 420,
        "height": 40,
        "layer": [
            {
                "data": {"values": [{"auc": auc, "from": 0.5}]},
                "mark": {"type": "bar", "color": CURRENT_COLOUR, "height": 22},
                "encoding": {
                    "x": {
                        "field": "auc",
                        "type": "quantitative",
                        # Chance-level AUCs scatter a little below 0.5 too.
                        "scale": {"domain": [min(0.4, math.floor(auc * 10) / 10), 1.0]},
                        "title": "drift classifier ROC-AUC (0.5: no drift, 1: fully separable)",
                    },
                    "x2": {"field": "from"},
                },
            },
            {
                "data": {"values": [{"auc": auc}]},
                "mark": {"type": "text", "align": "left", "dx": 4, "fontWeight": "bold"},
                "encoding": {
                    "x": {"field": "auc", "type": "quantitative"},
                    "text": {"field": "auc", "format": ".3f"},
                },
            },
        ],
    }


def svg_figure(spec: Mapping[str, Any]) -> str:
    """A Vega-Lite spec drawn to an inline <svg> element (vl-convert: no browser, no network)."""
    import vl_convert

    svg = str(vl_convert.vegalite_to_svg(vl_spec=dict(spec)))
    return re.sub(r"^<\?xml[^>]*>\s*", "", svg)


def field_row(field: FieldReport) -> str:
    drift = field.drift
    band = field.band or "-"
    cells = [
        html.escape(drift.feature),
        drift.kind,
        f"{drift.values:,}",
        "-" if drift.psi is None else f"{drift.psi:.3f}",
        f'<span class="{band}">{band}</span>',
        "KS" if drift.test == "ks" else "chi-square",
        format_pvalue(drift.pvalue),
        format_share(drift.missing_rate),
        format_share(drift.unseen_category_rate),
    ]
    return (
        f'<tr data-field="{html.escape(drift.feature)}">'
        + "".join(f"<td>{cell}</td>" for cell in cells)
        + "</tr>"
    )


def render_html(report: OfflineDriftReport) -> str:
    """The whole page: summary, per-field table, multivariate figure, distributions."""
    significant = report.significant_fields()
    score = "-" if report.drift_score is None else f"{report.drift_score:.3f}"
    if report.multivariate_auc is not None:
        multivariate = (
            f'<p id="multivariate-auc">ROC-AUC <strong>{report.multivariate_auc:.3f}</strong>'
            f" of a classifier telling {report.multivariate_records:,} current records from"
            " the profile's training sample (cross-validated; the service computes the same"
            " figure as <code>stroke_multivariate_drift_auc</code>). It sees changes in the"
            " joint distribution, such as the age-glucose relationship, that per-field PSI"
            " cannot.</p>"
            '<figure id="multivariate-figure">'
            f"{svg_figure(multivariate_spec(report.multivariate_auc))}</figure>"
        )
    else:
        multivariate = f'<p id="multivariate-auc">{html.escape(report.multivariate_note or "")}</p>'
    figures = "\n".join(
        f'<figure class="distribution" data-field="{html.escape(f.drift.feature)}">'
        f"<figcaption>{html.escape(f.drift.feature)}"
        + (" (reference bins)" if f.drift.kind == "numeric" else "")
        + f"</figcaption>{svg_figure(distribution_spec(f))}</figure>"
        for f in report.fields
    )
    binned_note = (
        "<p class='note'>This log is binned (STROKE_MONITOR_STORE=binned): numeric fields"
        " are tested by chi-square over the reference bins instead of KS.</p>"
        if report.binned
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Drift report: {html.escape(report.source)}</title>
<style>{PAGE_STYLE}</style>
</head>
<body>
<h1>Drift report</h1>
<p id="summary"><strong>{html.escape(report.source)}</strong>: {report.records:,} records
against the training reference ({report.reference_rows:,} rows). Largest PSI {score};
fields with significant drift (PSI &gt; 0.2): {html.escape(", ".join(significant) or "none")}.</p>
{binned_note}
<h2>Per field</h2>
<table id="fields">
<thead><tr><th>field</th><th>kind</th><th>values</th><th>PSI</th><th>band</th><th>test</th>
<th>p-value</th><th>missing</th><th>unseen categories</th></tr></thead>
<tbody>
{chr(10).join(field_row(f) for f in report.fields)}
</tbody>
</table>
<p class="note">PSI over the reference's bins and categories: up to 0.1 stable, 0.1-0.2
moderate, above 0.2 significant (the service's StrokeFeatureDrift alert). The p-value is a
two-sample KS test against the reference sample (numeric fields) or a chi-square test of
the category counts; with thousands of records it is small even for harmless shifts, so
read it next to PSI. Missing values are excluded from PSI and the tests and reported as
their own rate.</p>
<h2>Multivariate drift</h2>
{multivariate}
<h2>Distributions against training</h2>
<div class="figures">
{figures}
</div>
</body>
</html>
"""


# --- inputs ------------------------------------------------------------------------------


def records_from_csv(path: Path) -> list[dict[str, Any]]:
    """The ten fields of every row of a CSV of the raw schema (a stroke column optional).

    Raises DataValidationError naming each bad column with its file lines.
    """
    frame = validate_raw_frame(read_raw_csv(path), target_required=False)
    records = []
    for row in frame[list(FEATURE_NAMES)].itertuples(index=False):
        record = {}
        for name, value in zip(FEATURE_NAMES, row, strict=True):
            if hasattr(value, "item"):
                value = value.item()
            record[name] = None if isinstance(value, float) and math.isnan(value) else value
        records.append(record)
    return records


RELATIVE_TIME = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, now: datetime) -> datetime:
    """'24h', '30m', '7d' (that long before now) or an ISO 8601 date/time (UTC if no zone).

    Raises ValueError naming the accepted forms.
    """
    relative = RELATIVE_TIME.match(text.strip())
    if relative:
        seconds = float(relative["amount"]) * UNIT_SECONDS[relative["unit"]]
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use e.g. 24h, 30m, 7d (before now) or 2026-12-01T08:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LogWindow:
    records: list[dict[str, Any]]
    binned: bool
    model_versions: list[str]


def record_is_binned(record: Mapping[str, Any]) -> bool:
    """True if the record's numbers are bin indices: the service stores validated raw
    numbers as JSON floats and bin indices as JSON integers."""
    return all(
        isinstance(record.get(name), int) and not isinstance(record.get(name), bool)
        for name in NUMERIC_FIELDS
        if record.get(name) is not None
    )


def read_log_window(
    path: Path,
    *,
    since: datetime | None,
    until: datetime | None,
    model_version: str | None = None,
) -> LogWindow:
    """Feature records logged in [since, until) (either bound optional), read-only.

    The file is opened read-only and never created, pruned or migrated (the service's
    retention is its own business). Raises DriftReportError for a missing or unreadable
    file, an empty window, or a window mixing raw and binned records.
    """
    if not path.is_file():
        raise DriftReportError(f"{path}: no such prediction log (STROKE_MONITOR_DB)")
    conditions: list[str] = []
    parameters: list[float | str] = []
    if since is not None:
        conditions.append("created_at >= ?")
        parameters.append(since.timestamp())
    if until is not None:
        conditions.append("created_at < ?")
        parameters.append(until.timestamp())
    if model_version is not None:
        conditions.append("model_version = ?")
        parameters.append(model_version)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = connection.execute(
                f"SELECT seq, model_version, features FROM predictions {where} ORDER BY seq",
                parameters,
            ).fetchall()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise DriftReportError(f"{path}: cannot read the prediction log ({error})") from None
    if not rows:
        raise DriftReportError(
            f"{path}: no predictions in the window {describe_window(since, until)}"
        )
    records = [json.loads(features) for _, _, features in rows]
    kinds = [record_is_binned(record) for record in records]
    if any(kinds) and not all(kinds):
        first_raw = next(seq for (seq, _, _), binned in zip(rows, kinds, strict=True) if not binned)
        first_binned = next(seq for (seq, _, _), binned in zip(rows, kinds, strict=True) if binned)
        raise DriftReportError(
            f"{path}: the window mixes raw (row seq {first_raw}) and binned (row seq"
            f" {first_binned}) records; narrow it with --since/--until"
        )
    return LogWindow(
        records=records,
        binned=all(kinds),
        model_versions=sorted({version for _, version, _ in rows}),
    )


def describe_window(since: datetime | None, until: datetime | None) -> str:
    start = "the start" if since is None else f"{since:%Y-%m-%d %H:%M:%S %Z}"
    end = "now" if until is None else f"{until:%Y-%m-%d %H:%M:%S %Z}"
    return f"from {start} to {end}"


def load_reference_profile(path: Path) -> dict[str, Any]:
    try:
        profile: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise DriftReportError(f"{path}: not found; run `make run` (the DVC pipeline)") from None
    except json.JSONDecodeError as error:
        raise DriftReportError(f"{path}: not valid JSON ({error})") from None
    return profile
