"""Generate the three Grafana dashboards (service, model, drift) as JSON.

    .venv/bin/python -m monitoring.build_dashboards          # rewrite monitoring/grafana/dashboards
    .venv/bin/python -m monitoring.build_dashboards --check  # exit 1 if the committed JSON is stale

The JSON is committed (Grafana provisions it from files); this script is its source so
the three dashboards share one datasource uid, one style and current panel types only
(timeseries, stat, gauge, bargauge, table, heatmap). Queries use only metric names from
docs/CONTRACTS.md and the recording rule in prometheus/alert_rules.yml; the tests run
every query against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DATASOURCE_UID = "stroke-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
DASHBOARD_DIR = Path(__file__).resolve().parent / "grafana" / "dashboards"
SCHEMA_VERSION = 39
PANEL_TYPES = ("timeseries", "stat", "gauge", "bargauge", "table", "heatmap")
FEATURE_FILTER = 'feature=~"$feature"'
# Every replica reads the one shared prediction log, so every replica exports the same
# drift and live-performance window: the panels take the max over replicas (the same
# value), never a sum. Counters are summed over replicas.
SHARED_WINDOW_NOTE = (
    " Every replica reads the same shared prediction log and exports the same window;"
    " the panel shows the max over replicas (they agree up to a few seconds of caching)."
)


def target(
    expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, fmt: str = "time_series"
) -> dict[str, Any]:
    """One Prometheus query of a panel."""
    return {
        "datasource": DATASOURCE,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "instant": instant,
        "range": not instant,
        "format": fmt,
    }


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    grid: tuple[int, int, int, int],
    *,
    unit: str = "short",
    description: str = "",
    steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
    minimum: float | None = None,
    maximum: float | None = None,
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A panel of a current type with the shared datasource; grid = (x, y, width, height)."""
    if kind not in PANEL_TYPES:
        raise ValueError(f"panel type {kind!r} is not one of {PANEL_TYPES}")
    x, y, w, h = grid
    defaults: dict[str, Any] = {"unit": unit, "thresholds": thresholds(*steps)}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if custom:
        defaults["custom"] = custom
    for index, item in enumerate(targets):
        item["refId"] = chr(ord("A") + index)
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
        "targets": targets,
    }


def stat_options() -> dict[str, Any]:
    return {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "textMode": "auto",
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    *,
    variables: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A dashboard with ids assigned in order, UTC, 30 s refresh, last 6 hours."""
    for index, item in enumerate(panels, start=1):
        item["id"] = index
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["stroke-risk"],
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["stroke-risk"],
                "title": "stroke-risk",
                "asDropdown": True,
            }
        ],
        "panels": panels,
    }


def latency_quantile(quantile: float, endpoint: str = "/predict") -> str:
    return (
        f"histogram_quantile({quantile}, sum by (le) "
        f"(rate(stroke_http_request_duration_seconds_bucket"
        f'{{endpoint="{endpoint}"}}[$__rate_interval])))'
    )


# A healthy service has no 5xx (or 4xx, or validation-failure) series at all: `or vector(0)`
# shows 0 instead of "No data", which an on-call reader could mistake for a broken panel.
ERROR_RATIO = (
    '(sum(rate(stroke_http_requests_total{status=~"5.."}[$__rate_interval])) or vector(0))'
    " / sum(rate(stroke_http_requests_total[$__rate_interval]))"
)
CLIENT_ERROR_RATIO = (
    '(sum(rate(stroke_http_requests_total{status=~"4.."}[$__rate_interval])) or vector(0))'
    " / sum(rate(stroke_http_requests_total[$__rate_interval]))"
)
POSITIVE_RATE = (
    '(sum(rate(stroke_predictions_total{predicted="positive"}[$__rate_interval])) or vector(0))'
    " / sum(rate(stroke_predictions_total[$__rate_interval]))"
)


def service_dashboard() -> dict[str, Any]:
    """Traffic, errors and latency of the HTTP service."""
    panels = [
        panel(
            "stat",
            "Targets up",
            [
                target('sum(up{job="stroke-risk"})', "up"),
                target('count(up{job="stroke-risk"})', "discovered"),
            ],
            (0, 0, 4, 4),
            steps=((None, "red"), (1, "green")),
            options=stat_options(),
            description=(
                "Replicas of job stroke-risk answering /metrics, of those discovered."
                " StrokeReplicaDown fires for one down, StrokeServiceDown for all."
            ),
        ),
        panel(
            "stat",
            "/predict requests/s",
            [
                target(
                    'sum(rate(stroke_http_requests_total{endpoint="/predict"}[$__rate_interval]))'
                )
            ],
            (4, 0, 5, 4),
            unit="reqps",
            options=stat_options(),
        ),
        panel(
            "stat",
            "5xx ratio",
            [target(ERROR_RATIO)],
            (9, 0, 5, 4),
            unit="percentunit",
            steps=((None, "green"), (0.01, "orange"), (0.05, "red")),
            options=stat_options(),
            description="Alert StrokeHighErrorRatio fires above 5% for 5 minutes.",
        ),
        panel(
            "stat",
            "/predict p99",
            [target(latency_quantile(0.99))],
            (14, 0, 5, 4),
            unit="s",
            steps=((None, "green"), (0.1, "orange"), (0.25, "red")),
            options=stat_options(),
            description="Alert StrokeHighLatencyP99 fires above 250 ms for 10 minutes.",
        ),
        panel(
            "stat",
            "Validation failures/s",
            [target("sum(rate(stroke_validation_failures_total[$__rate_interval])) or vector(0)")],
            (19, 0, 5, 4),
            unit="short",
            options=stat_options(),
        ),
        panel(
            "timeseries",
            "Requests by endpoint and status",
            [
                target(
                    "sum by (endpoint, status) "
                    "(rate(stroke_http_requests_total[$__rate_interval]))",
                    "{{endpoint}} {{status}}",
                )
            ],
            (0, 4, 12, 8),
            unit="reqps",
        ),
        panel(
            "timeseries",
            "Error ratio",
            [
                target(ERROR_RATIO, "5xx"),
                target(CLIENT_ERROR_RATIO, "4xx"),
            ],
            (12, 4, 12, 8),
            unit="percentunit",
            minimum=0,
        ),
        panel(
            "timeseries",
            "/predict latency p50 / p95 / p99",
            [
                target(latency_quantile(0.5), "p50"),
                target(latency_quantile(0.95), "p95"),
                target(latency_quantile(0.99), "p99"),
            ],
            (0, 12, 12, 8),
            unit="s",
            minimum=0,
        ),
        panel(
            "timeseries",
            "p99 latency by endpoint",
            [
                target(
                    "histogram_quantile(0.99, sum by (le, endpoint) "
                    "(rate(stroke_http_request_duration_seconds_bucket[$__rate_interval])))",
                    "{{endpoint}}",
                )
            ],
            (12, 12, 12, 8),
            unit="s",
            minimum=0,
        ),
        panel(
            "heatmap",
            "/predict latency distribution",
            [
                target(
                    "sum by (le) (increase(stroke_http_request_duration_seconds_bucket"
                    '{endpoint="/predict"}[$__rate_interval]))',
                    "{{le}}",
                    fmt="heatmap",
                )
            ],
            (0, 20, 12, 8),
            unit="s",
            options={
                "calculate": False,
                "yAxis": {"unit": "s"},
                "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges"},
            },
        ),
        panel(
            "timeseries",
            "Requests/s by replica",
            [
                target(
                    "sum by (instance) (rate(stroke_http_requests_total[$__rate_interval]))",
                    "{{instance}}",
                ),
                target(
                    "sum(rate(stroke_http_requests_total[$__rate_interval]))",
                    "all replicas",
                ),
            ],
            (0, 28, 12, 8),
            unit="reqps",
            description=(
                "The load balancer's spread over the replicas; every other panel adds them up."
            ),
        ),
        panel(
            "timeseries",
            "Validation failures by field",
            [
                target(
                    "sum by (field) (rate(stroke_validation_failures_total[$__rate_interval]))",
                    "{{field}}",
                )
            ],
            (12, 20, 12, 8),
            unit="short",
        ),
    ]
    return dashboard(
        "stroke-service",
        "Stroke risk / Service",
        "Traffic, errors and latency of the stroke-risk API.",
        panels,
    )


def model_dashboard() -> dict[str, Any]:
    """What the model outputs and how it performs on labelled feedback."""
    live_steps = ((None, "red"), (0.7, "orange"), (0.8, "green"))
    panels = [
        panel(
            "table",
            "Model in service",
            [
                target(
                    "max by (model_version, model_family, git_commit) (stroke_model_info)",
                    instant=True,
                    fmt="table",
                )
            ],
            (0, 0, 12, 4),
            options={"showHeader": True},
        ),
        panel(
            "stat",
            "Decision threshold",
            [target("max(stroke_model_decision_threshold)")],
            (12, 0, 4, 4),
            unit="percentunit",
            options=stat_options(),
        ),
        panel(
            "stat",
            "Positive rate (1h)",
            [
                target(
                    '(sum(rate(stroke_predictions_total{predicted="positive"}[1h])) or vector(0))'
                    " / sum(rate(stroke_predictions_total[1h]))"
                )
            ],
            (16, 0, 4, 4),
            unit="percentunit",
            options=stat_options(),
        ),
        panel(
            "stat",
            "Reference positive rate",
            [target("max(stroke_reference_positive_rate)")],
            (20, 0, 4, 4),
            unit="percentunit",
            options=stat_options(),
        ),
        panel(
            "timeseries",
            "Predicted-positive rate vs reference",
            [
                target(POSITIVE_RATE, "observed"),
                target("max(stroke_reference_positive_rate)", "reference (training, out-of-fold)"),
                target(
                    "stroke:predicted_positive_rate:ratio_rate30m", "observed, 30m (alert input)"
                ),
            ],
            (0, 4, 12, 8),
            unit="percentunit",
            minimum=0,
            description=(
                "StrokePositiveRateShift fires when the 30m rate leaves"
                " half to double the reference."
            ),
        ),
        panel(
            "timeseries",
            "Scored records/s by decision",
            [
                target(
                    "sum by (predicted) (rate(stroke_predictions_total[$__rate_interval]))",
                    "{{predicted}}",
                )
            ],
            (12, 4, 12, 8),
            unit="short",
            custom={"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 30},
        ),
        panel(
            "heatmap",
            "Predicted probability distribution",
            [
                target(
                    "sum by (le) (increase(stroke_predicted_probability_bucket[$__rate_interval]))",
                    "{{le}}",
                    fmt="heatmap",
                )
            ],
            (0, 12, 12, 8),
            unit="percentunit",
            options={
                "calculate": False,
                "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Blues"},
            },
        ),
        panel(
            "bargauge",
            "Probability histogram (last 1h)",
            [
                target(
                    "sum by (le) (increase(stroke_predicted_probability_bucket[1h]))",
                    "{{le}}",
                    instant=True,
                    fmt="heatmap",
                )
            ],
            (12, 12, 12, 8),
            unit="short",
            options={
                "orientation": "vertical",
                "displayMode": "gradient",
                "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
            },
            description="Cumulative bucket counts: records with probability <= le.",
        ),
        panel(
            "timeseries",
            "Predicted probability quantiles",
            [
                target(
                    f"histogram_quantile({q}, sum by (le) "
                    "(rate(stroke_predicted_probability_bucket[$__rate_interval])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.9, 0.99)
            ],
            (0, 20, 12, 8),
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        panel(
            "stat",
            "Labels (strokes / non-strokes)",
            [
                target("max(stroke_live_labels)", "labels"),
                target("max(stroke_live_positive_labels)", "strokes"),
                target("max(stroke_live_negative_labels)", "non-strokes"),
            ],
            (12, 20, 4, 4),
            options=stat_options(),
            description=(
                "Feedback labels in the performance window, by class. Live ROC-AUC, recall"
                " and precision appear once the minimum of each class is reached; the alerts"
                " also need 10 strokes and 40 non-strokes." + SHARED_WINDOW_NOTE
            ),
        ),
        panel(
            "gauge",
            "Live ROC-AUC",
            [target("max(stroke_live_roc_auc)")],
            (16, 20, 4, 4),
            unit="none",
            minimum=0.5,
            maximum=1,
            steps=live_steps,
        ),
        panel(
            "gauge",
            "Live recall",
            [target("max(stroke_live_recall)")],
            (20, 20, 4, 4),
            unit="percentunit",
            minimum=0,
            maximum=1,
            steps=((None, "red"), (0.6, "orange"), (0.75, "green")),
        ),
        panel(
            "stat",
            "Feedback accepted/s",
            [
                target(
                    'sum(rate(stroke_feedback_total{outcome="accepted"}[$__rate_interval]))',
                    "accepted",
                ),
                target(
                    'sum(rate(stroke_feedback_total{outcome="rejected"}[$__rate_interval]))',
                    "rejected",
                ),
            ],
            (12, 24, 12, 4),
            unit="short",
            options=stat_options(),
        ),
        panel(
            "timeseries",
            "Live performance from feedback",
            [
                target("max(stroke_live_roc_auc)", "ROC-AUC"),
                target("max(stroke_live_recall)", "recall"),
                target("max(stroke_live_precision)", "precision"),
                target("max(stroke_live_brier)", "Brier"),
            ],
            (0, 28, 24, 8),
            unit="none",
            minimum=0,
            maximum=1,
        ),
        panel(
            "gauge",
            "Estimated ROC-AUC (no labels)",
            [target("max(stroke_estimated_roc_auc)")],
            (0, 36, 6, 5),
            unit="none",
            minimum=0.5,
            maximum=1,
            steps=live_steps,
            description=(
                "Expected from the calibrated probabilities of the drift window alone"
                " (confidence-based estimation). StrokeEstimatedRocAucLow: < 0.70 for 30m"
                " with 200 records." + SHARED_WINDOW_NOTE
            ),
        ),
        panel(
            "gauge",
            "Estimated recall (no labels)",
            [target("max(stroke_estimated_recall)")],
            (6, 36, 6, 5),
            unit="percentunit",
            minimum=0,
            maximum=1,
            steps=((None, "red"), (0.6, "orange"), (0.75, "green")),
            description="StrokeEstimatedRecallLow: < 0.60 for 30m with 200 records.",
        ),
        panel(
            "gauge",
            "Estimated precision (no labels)",
            [target("max(stroke_estimated_precision)")],
            (12, 36, 12, 5),
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        panel(
            "timeseries",
            "Label-based vs estimated performance",
            [
                target("max(stroke_live_roc_auc)", "ROC-AUC (labels)"),
                target("max(stroke_estimated_roc_auc)", "ROC-AUC (estimated)"),
                target("max(stroke_live_recall)", "recall (labels)"),
                target("max(stroke_estimated_recall)", "recall (estimated)"),
                target("max(stroke_live_precision)", "precision (labels)"),
                target("max(stroke_estimated_precision)", "precision (estimated)"),
            ],
            (0, 41, 24, 8),
            unit="none",
            minimum=0,
            maximum=1,
            description=(
                "Estimates track the label-based figures while the model stays calibrated"
                " on the live population; a gap means its confidence no longer matches"
                " outcomes (recalibrate or retrain)."
            ),
        ),
        panel(
            "stat",
            "Observed / expected strokes",
            [target("max(stroke_live_observed_expected_ratio)")],
            (0, 49, 6, 8),
            unit="none",
            steps=((None, "orange"), (0.67, "green"), (1.5, "orange")),
            options=stat_options(),
            description=(
                "Strokes among the drift window's labelled predictions over the sum of their"
                " probabilities (1: calibrated; absent below 5 expected strokes)."
                + SHARED_WINDOW_NOTE
            ),
        ),
        panel(
            "timeseries",
            "Calibration p-value (observed vs expected strokes)",
            [target("min(stroke_live_calibration_pvalue)", "p-value")],
            (6, 49, 18, 8),
            unit="none",
            maximum=1,
            steps=((None, "red"), (0.001, "green")),
            custom={
                "scaleDistribution": {"type": "log", "log": 10},
                "thresholdsStyle": {"mode": "line"},
            },
            description=(
                "Sees a changed prevalence or a shifted risk that ROC-AUC and recall (ranking"
                " only) miss. StrokeLiveCalibrationShift: below 0.001 for 30m."
            ),
        ),
    ]
    return dashboard(
        "stroke-model",
        "Stroke risk / Model",
        "Model outputs, positive rate and live performance.",
        panels,
    )


def drift_dashboard() -> dict[str, Any]:
    """Per-feature drift of the live window against the training reference."""
    feature_variable = {
        "type": "query",
        "name": "feature",
        "label": "Feature",
        "datasource": DATASOURCE,
        "query": {
            "query": "label_values(stroke_feature_missing_rate, feature)",
            "refId": "feature",
        },
        "definition": "label_values(stroke_feature_missing_rate, feature)",
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }
    psi_steps = ((None, "green"), (0.1, "orange"), (0.2, "red"))
    panels = [
        panel(
            "stat",
            "Drift score (max PSI)",
            [target("max(stroke_drift_score)")],
            (0, 0, 6, 4),
            steps=psi_steps,
            options=stat_options(),
            unit="none",
            description="The largest per-feature PSI." + SHARED_WINDOW_NOTE,
        ),
        panel(
            "stat",
            "Records in window",
            [target("max(stroke_drift_window_records)")],
            (6, 0, 6, 4),
            options=stat_options(),
            description=(
                "Records of the whole service (all replicas) in the drift window. Drift"
                " gauges appear once it holds the configured minimum." + SHARED_WINDOW_NOTE
            ),
        ),
        panel(
            "stat",
            "Features with PSI > 0.2",
            [target("count(max by (feature) (stroke_feature_psi) > 0.2) or vector(0)")],
            (12, 0, 6, 4),
            steps=((None, "green"), (1, "red")),
            options=stat_options(),
        ),
        panel(
            "stat",
            "Features with p < 0.0001",
            [target("count(min by (feature) (stroke_feature_drift_pvalue) < 0.0001) or vector(0)")],
            (18, 0, 6, 4),
            steps=((None, "green"), (1, "red")),
            options=stat_options(),
            description=(
                "Features whose drift test is below StrokeFeatureDrift's level (fires after"
                " 30m); about 0.001 of same-population windows have some feature there."
            ),
        ),
        panel(
            "bargauge",
            "PSI by feature (now)",
            [
                target(
                    f"max by (feature) (stroke_feature_psi{{{FEATURE_FILTER}}})",
                    "{{feature}}",
                    instant=True,
                )
            ],
            (0, 4, 12, 9),
            unit="none",
            minimum=0,
            maximum=0.5,
            steps=psi_steps,
            options={
                "orientation": "horizontal",
                "displayMode": "gradient",
                "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
            },
            description=(
                "0.1-0.2: moderate shift; above 0.2: significant. Effect size only: on 100"
                " records PSI passes 0.2 by chance, so the alert is on the p-values."
            ),
        ),
        panel(
            "table",
            "Drift tests (now)",
            [
                target(
                    f"max by (feature, test) (stroke_feature_drift_pvalue{{{FEATURE_FILTER}}})",
                    instant=True,
                    fmt="table",
                )
            ],
            (12, 4, 12, 9),
            unit="none",
            options={"showHeader": True, "sortBy": [{"displayName": "Value", "desc": False}]},
            description=(
                "KS (numeric) and chi-square (categorical) p-values vs the training reference;"
                " small = different."
            ),
        ),
        panel(
            "timeseries",
            "PSI by feature",
            [target(f"max by (feature) (stroke_feature_psi{{{FEATURE_FILTER}}})", "{{feature}}")],
            (0, 13, 12, 8),
            unit="none",
            minimum=0,
            steps=psi_steps,
            custom={"thresholdsStyle": {"mode": "line"}},
        ),
        panel(
            "timeseries",
            "Drift p-values",
            [
                target(
                    f"max by (feature, test) (stroke_feature_drift_pvalue{{{FEATURE_FILTER}}})",
                    "{{feature}} ({{test}})",
                )
            ],
            (12, 13, 12, 8),
            unit="none",
            maximum=1,
            steps=((None, "red"), (0.0001, "green")),
            custom={
                "scaleDistribution": {"type": "log", "log": 10},
                "thresholdsStyle": {"mode": "line"},
            },
            description="StrokeFeatureDrift: any feature below 0.0001 for 30m.",
        ),
        panel(
            "timeseries",
            "Missing-value rate",
            [
                target(
                    f"max by (feature) (stroke_feature_missing_rate{{{FEATURE_FILTER}}})",
                    "{{feature}}",
                )
            ],
            (0, 21, 12, 8),
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        panel(
            "timeseries",
            "Unseen-category rate",
            [
                target(
                    f"max by (feature) (stroke_feature_unseen_category_rate{{{FEATURE_FILTER}}})",
                    "{{feature}}",
                )
            ],
            (12, 21, 12, 8),
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        panel(
            "stat",
            "Multivariate drift (classifier AUC)",
            [target("max(stroke_multivariate_drift_auc)")],
            (0, 29, 6, 8),
            steps=((None, "green"), (0.6, "orange"), (0.7, "red")),
            options=stat_options(),
            unit="none",
            description=(
                "ROC-AUC of a classifier telling the live window from 500 training rows"
                " (0.5: indistinguishable). Sees changed relationships between fields that"
                " per-feature PSI misses; refitted at most once a minute per worker."
                " StrokeMultivariateDrift: > 0.70 for 30m with 200 records." + SHARED_WINDOW_NOTE
            ),
        ),
        panel(
            "timeseries",
            "Multivariate drift vs max PSI",
            [
                target("max(stroke_multivariate_drift_auc)", "classifier AUC"),
                target("max(stroke_drift_score)", "max PSI"),
            ],
            (6, 29, 18, 8),
            unit="none",
            minimum=0,
        ),
        panel(
            "timeseries",
            "Rank correlation by pair (live)",
            [target("max by (pair) (stroke_feature_correlation)", "{{pair}}")],
            (0, 37, 12, 8),
            unit="none",
            minimum=-1,
            maximum=1,
            description=(
                "Spearman's rho of each numeric pair in the drift window; the training"
                " split's values are in the reference profile's correlations." + SHARED_WINDOW_NOTE
            ),
        ),
        panel(
            "timeseries",
            "Correlation p-values",
            [target("min by (pair) (stroke_feature_correlation_pvalue)", "{{pair}}")],
            (12, 37, 12, 8),
            unit="none",
            maximum=1,
            steps=((None, "red"), (0.0003, "green")),
            custom={
                "scaleDistribution": {"type": "log", "log": 10},
                "thresholdsStyle": {"mode": "line"},
            },
            description=(
                "'Same rank correlation as all training rows' (Fisher z). Sees a broken"
                " relationship (age and glucose no longer rising together) that no per-feature"
                " test can. StrokeFeatureCorrelationDrift: below 0.0003 for 30m."
            ),
        ),
    ]
    return dashboard(
        "stroke-drift",
        "Stroke risk / Drift",
        "Live input drift against the training reference profile.",
        panels,
        variables=[feature_variable],
    )


DASHBOARDS = {
    "stroke-service.json": service_dashboard,
    "stroke-model.json": model_dashboard,
    "stroke-drift.json": drift_dashboard,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard (stable formatting for diffs)."""
    return {
        name: json.dumps(build(), indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.build_dashboards", description=__doc__
    )
    parser.add_argument("--out", type=Path, default=DASHBOARD_DIR)
    parser.add_argument("--check", action="store_true", help="only compare with the files in --out")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print("stale dashboards (run python -m monitoring.build_dashboards): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
