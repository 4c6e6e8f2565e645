"""Grafana dashboards and provisioning: current panel types, one datasource uid, contract names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.build_dashboards import DASHBOARD_DIR, PANEL_TYPES, render_all

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = REPO_ROOT / "monitoring" / "grafana" / "provisioning"
RULES = REPO_ROOT / "monitoring" / "prometheus" / "alert_rules.yml"


def contract_metric_names() -> set[str]:
    """Metric names declared in docs/CONTRACTS.md (the Prometheus table)."""
    text = (REPO_ROOT / "docs" / "CONTRACTS.md").read_text()
    section = text.split("## Prometheus metric names", 1)[1]
    return set(re.findall(r"`(stroke_[a-z_]+)`", section))


def recording_rule_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def metric_names(expr: str) -> set[str]:
    """stroke_* metric names and stroke:* recording rules used in a PromQL expression."""
    names = set(re.findall(r"\bstroke[_:][a-z0-9_:]+", expr))
    labels = set(re.findall(r"\b(stroke[_:][a-z0-9_:]+)\s*=", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names - labels}


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_targets() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, panel["title"], target)
        for name, board in dashboards().items()
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def provisioned_uid() -> str:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (datasource,) = config["datasources"]
    assert datasource["type"] == "prometheus"
    return str(datasource["uid"])


def test_committed_dashboards_match_the_generator() -> None:
    committed = {p.name: p.read_text() for p in DASHBOARD_DIR.glob("*.json")}
    assert committed == render_all(), "run: python -m monitoring.build_dashboards"


def test_three_dashboards_with_unique_uids() -> None:
    boards = dashboards()
    assert set(boards) == {"stroke-service.json", "stroke-model.json", "stroke-drift.json"}
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == 3


def test_panels_use_current_types_and_the_provisioned_datasource() -> None:
    uid = provisioned_uid()
    for name, board in dashboards().items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            assert panel["type"] in PANEL_TYPES, (name, panel["title"], panel["type"])
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid
                assert target["expr"].strip()


def test_queries_use_only_contract_metrics() -> None:
    known = contract_metric_names() | recording_rule_names()
    assert "stroke_feature_psi" in known and "stroke_http_request_duration_seconds" in known
    for name, title, target in all_targets():
        unknown = metric_names(target["expr"]) - known
        assert not unknown, f"{name} / {title}: {unknown}"


def test_alert_rules_use_only_contract_metrics() -> None:
    known = contract_metric_names() | recording_rule_names()
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            assert not metric_names(rule["expr"]) - known, rule.get("alert", rule.get("record"))


@pytest.mark.parametrize(
    ("board", "needles"),
    [
        (
            "stroke-service.json",
            [
                "stroke_http_requests_total",
                "histogram_quantile(0.5,",
                "histogram_quantile(0.95,",
                "histogram_quantile(0.99,",
                'status=~"5.."',
            ],
        ),
        (
            "stroke-model.json",
            [
                "stroke_predicted_probability_bucket",
                "stroke_reference_positive_rate",
                'predicted="positive"',
                "stroke_live_roc_auc",
                "stroke_live_recall",
                "stroke_live_precision",
                "stroke_live_brier",
                "stroke_live_positive_labels",
                "stroke_live_negative_labels",
                "stroke_estimated_roc_auc",
                "stroke_estimated_recall",
                "stroke_estimated_precision",
                "stroke_live_observed_expected_ratio",
                "stroke_live_calibration_pvalue",
            ],
        ),
        (
            "stroke-drift.json",
            [
                "stroke_feature_psi",
                "stroke_feature_drift_pvalue",
                "stroke_feature_missing_rate",
                "stroke_feature_unseen_category_rate",
                "stroke_drift_score",
                "stroke_multivariate_drift_auc",
                "stroke_feature_correlation",
                "stroke_feature_correlation_pvalue",
            ],
        ),
    ],
)
def test_dashboards_show_what_they_promise(board: str, needles: list[str]) -> None:
    expressions = " ".join(t["expr"] for n, _, t in all_targets() if n == board)
    for needle in needles:
        assert needle in expressions, f"{board} lacks {needle}"


def test_template_variables_reference_the_datasource_by_uid() -> None:
    uid = provisioned_uid()
    for board in dashboards().values():
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == uid


def test_every_query_aggregates_over_replicas() -> None:
    """N replicas read like one service: each stroke_* series is inside sum/max/count by."""
    for name, title, target in all_targets():
        expr = target["expr"]
        if not re.search(r"\bstroke_|\bup\{", expr):
            continue  # recording rules (stroke:...) aggregate already
        stripped = re.sub(r"\b(sum|max|min|count|avg)( by \([^)]*\))? ?\(", "", expr)
        assert stripped != expr, f"{name} / {title}: {expr} does not aggregate"
        # No bare gauge comparison outside an aggregation (a per-replica count would double).
        assert not re.search(r"count\(stroke_", expr), f"{name} / {title}: {expr}"
