"""PR report: what a branch did to the model, as Markdown with plots rendered offline.

    python -m stroke_risk.commands.pr_report --base origin/main --out pr-report.md

compares the base revision's committed outputs (read with `git show`) with the workspace's
(after `dvc repro`). It leads with a verdict: which headline metrics changed beyond noise and
in which direction, from the paired tests of `stroke_risk.evaluation.comparison` (corrected
resampled
t-test on the shared CV folds, paired patient bootstrap on the shared test split, recall /
specificity / precision at each revision's own threshold). Below it: the model family,
threshold and tuned hyper-parameters that changed, the raw metrics and params that changed,
and ROC / precision-recall / calibration curves of both overlaid, rendered to PNG next to
the report (`pr-report/`) with vl-convert — no browser, no network. The report and its
images are written only when everything rendered.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stroke_risk import paths
from stroke_risk.evaluation.comparison import (
    CV_METHOD,
    NESTED_KEY,
    TEST_METHOD,
    ComparisonError,
    PairedTest,
    format_difference,
    format_p,
    load_run,
    nested_estimate,
    paired_tests,
)
from stroke_risk.evaluation.thresholds import THRESHOLD_POLICIES
from stroke_risk.io import write_text
from stroke_risk.run_files import directory_reader, flatten, git_reader

METRICS_PATH = paths.METRICS
PARAMS_PATH = paths.PARAMS
EVALUATION_PATH = paths.EVALUATION
TUNING_PATH = paths.TUNING_REPORT
MARKER = "<!-- stroke-risk pr-report -->"
BASE_COLOUR, HEAD_COLOUR = "#8c8c8c", "#d62728"


@dataclass(frozen=True)
class Curve:
    """One overlaid plot: a committed CSV of reports/plots and how to draw it."""

    name: str
    path: str
    x: str
    y: str
    title: str
    diagonal: bool
    summary_metric: str
    # The decision threshold's operating point, from test metrics: (x, y) metric names.
    operating_point: tuple[Callable[[Mapping[str, float]], float | None], ...] = ()


def _metric(key: str) -> Callable[[Mapping[str, float]], float | None]:
    return lambda metrics: metrics.get(key)


def _false_positive_rate(metrics: Mapping[str, float]) -> float | None:
    specificity = metrics.get("test.specificity")
    return None if specificity is None else 1.0 - specificity


CURVES = (
    Curve(
        "roc",
        paths.plot_table("roc"),
        "fpr",
        "tpr",
        "ROC (test split)",
        diagonal=True,
        summary_metric="test.roc_auc",
        operating_point=(_false_positive_rate, _metric("test.recall")),
    ),
    Curve(
        "pr",
        paths.plot_table("pr"),
        "recall",
        "precision",
        "Precision-recall (test split)",
        diagonal=False,
        summary_metric="test.average_precision",
        operating_point=(_metric("test.recall"), _metric("test.precision")),
    ),
    Curve(
        "calibration",
        paths.plot_table("calibration"),
        "mean_predicted",
        "observed_rate",
        "Calibration (test split)",
        diagonal=True,
        summary_metric="test.ece",
    ),
)


class ReportError(Exception):
    """A problem the user fixes (bad revision, missing outputs): one line, no traceback."""


@dataclass(frozen=True)
class Snapshot:
    """The outputs of one revision that the report compares."""

    label: str
    metrics: dict[str, float]
    params: dict[str, Any]
    evaluation: dict[str, Any]
    tuning: dict[str, Any]
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any

    @property
    def delta(self) -> float | None:
        numbers = (int, float)
        if isinstance(self.old, numbers) and isinstance(self.new, numbers):
            return float(self.new) - float(self.old)
        return None


# --- pure functions -------------------------------------------------------------------------


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Keys whose value differs (or that exist on one side only), sorted by key."""
    keys = sorted(set(old) | set(new))
    return [Change(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


def parse_curve(text: str) -> list[dict[str, float]]:
    """Rows of a numeric CSV as dicts of floats."""
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def curve_spec(curve: Curve, base: Snapshot, head: Snapshot) -> dict[str, Any]:
    """A Vega-Lite spec with base and head overlaid (head solid, base dashed).

    Each legend entry carries the curve's summary metric; a point marks each revision's
    operating point at its decision threshold, so a threshold change is visible too.
    """
    labels = {}
    rows: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    # Head first, so the dashed base is drawn over it and stays visible where they coincide.
    for snapshot in (head, base):
        summary = snapshot.metrics.get(curve.summary_metric)
        label = snapshot.label
        if summary is not None:
            label += f" ({curve.summary_metric.split('.')[-1]} {summary:.3f})"
        labels[snapshot.label] = label
        for index, row in enumerate(snapshot.curves.get(curve.name, [])):
            rows.append(
                {"revision": label, "order": index, curve.x: row[curve.x], curve.y: row[curve.y]}
            )
        if curve.operating_point:
            point_x, point_y = (get(snapshot.metrics) for get in curve.operating_point)
            if point_x is not None and point_y is not None:
                points.append({"revision": label, curve.x: point_x, curve.y: point_y})
    domain = [labels[base.label], labels[head.label]]
    colour = {
        "field": "revision",
        "type": "nominal",
        "scale": {"domain": domain, "range": [BASE_COLOUR, HEAD_COLOUR]},
        "legend": {"orient": "bottom", "direction": "vertical", "title": None, "labelLimit": 400},
    }
    top = 1.0
    if curve.name == "calibration":
        top = round(max([0.05] + [max(r[curve.x], r[curve.y]) for r in rows]) * 1.05, 3)
    x = {"field": curve.x, "type": "quantitative", "scale": {"domain": [0, top]}}
    y = {"field": curve.y, "type": "quantitative", "scale": {"domain": [0, top]}}
    layers: list[dict[str, Any]] = []
    if curve.diagonal:
        layers.append(
            {
                "data": {"values": [{curve.x: 0, curve.y: 0}, {curve.x: top, curve.y: top}]},
                "mark": {"type": "line", "color": "#cccccc", "strokeWidth": 1},
                "encoding": {"x": x, "y": y},
            }
        )
    layers.append(
        {
            "data": {"values": rows},
            "mark": {"type": "line", "point": curve.name == "calibration", "strokeWidth": 2},
            "encoding": {
                "x": x,
                "y": y,
                "order": {"field": "order", "type": "quantitative"},
                "color": colour,
                "strokeDash": {
                    "field": "revision",
                    "type": "nominal",
                    "scale": {"domain": domain, "range": [[6, 4], [1, 0]]},
                    "legend": None,
                },
            },
        }
    )
    if points:
        layers.append(
            {
                "data": {"values": points},
                "mark": {"type": "point", "filled": True, "size": 90, "shape": "diamond"},
                "encoding": {"x": x, "y": y, "color": {**colour, "legend": None}},
            }
        )
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": curve.title,
        "width": 340,
        "height": 300,
        "background": "white",
        "layer": layers,
    }


def format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return (
            f"{value:.4g}"
            if abs(value) < 1e-3 and value != 0
            else f"{value:.4f}".rstrip("0").rstrip(".")
        )
    if isinstance(value, (list, dict)):
        return "`" + json.dumps(value) + "`"
    return str(value)


def format_delta(delta: float | None) -> str:
    return "" if delta is None else f"{delta:+.4f}"


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def model_rows(base: Snapshot, head: Snapshot) -> list[list[str]]:
    """Model family, tuned params and decision threshold of both revisions."""

    def family(s: Snapshot) -> Any:
        return s.tuning.get("family", s.params.get("model.family"))

    def threshold(s: Snapshot) -> Any:
        return s.metrics.get("test.threshold", s.evaluation.get("threshold", {}).get("value"))

    def policy(s: Snapshot) -> str:
        policy_name = s.params.get("threshold.policy")
        if policy_name is None:
            return "—"
        known = THRESHOLD_POLICIES.get(policy_name)
        if known is None or known.setting is None:
            return str(policy_name)
        setting = s.params.get(f"threshold.{known.setting}")
        return f"{policy_name} ({known.setting_label} {format_value(setting)})"

    rows = []
    for name, get in (
        ("model family", family),
        ("threshold policy", policy),
        ("decision threshold", threshold),
    ):
        old, new = get(base), get(head)
        mark = "" if old == new else " **changed**"
        rows.append([name, format_value(old), format_value(new) + mark])
    return rows


HEADLINE_ORDER = (
    "cv.roc_auc",
    "cv.average_precision",
    "cv.brier",
    "test.roc_auc",
    "test.average_precision",
    "test.brier",
    "test.recall",
    "test.specificity",
    "test.precision",
)


@dataclass(frozen=True)
class Verdict:
    """The paired tests of head against base, or why there are none."""

    tests: tuple[PairedTest, ...] = ()
    untested_reason: str = ""
    n_resamples: int = 0


def verdict_lines(base: Snapshot, head: Snapshot, verdict: Verdict) -> list[str]:
    """The report's lead: a sentence naming each metric that changed beyond noise (p < 0.05)
    with its direction, difference, CI and p; then the table of every headline metric."""
    lines = ["### Verdict", ""]
    if not verdict.tests:
        lines += [
            f"No paired tests: {verdict.untested_reason or 'no shared folds or test split'}. "
            "The raw values below carry no uncertainty.",
            "",
        ]
    else:
        order = {key: index for index, key in enumerate(HEADLINE_ORDER)}
        tests = sorted(verdict.tests, key=lambda t: order.get(t.key, len(order)))
        changed = [t for t in tests if t.verdict != "no significant change"]
        noise = [t.label for t in tests if t.verdict == "no significant change"]
        if changed:
            lines.append(
                "**Changed beyond noise (p < 0.05):** "
                + "; ".join(
                    f"**{t.label} {t.verdict}** {format_difference(t)}, p {format_p(t.p)}"
                    for t in changed
                )
                + "."
            )
        else:
            lines.append("**No headline metric changed beyond noise** (every p ≥ 0.05).")
        if noise:
            lines += ["", "Within noise: " + ", ".join(noise) + "."]
        rows = [
            [
                f"`{t.key}`",
                format_value(base.metrics.get(t.key)),
                format_value(head.metrics.get(t.key)),
                format_difference(t),
                format_p(t.p),
                f"**{t.verdict}**" if t.verdict != "no significant change" else t.verdict,
            ]
            for t in tests
        ]
        rows.append(
            [
                f"`{NESTED_KEY}` ± sd",
                nested_estimate(base.metrics),
                nested_estimate(head.metrics),
                "not paired",
                "",
                "–",
            ]
        )
        lines += [
            "",
            table(["metric", "base", "head", "difference (95% CI)", "p", "verdict"], rows),
            "",
            f"Difference = head − base; lower is better for Brier. CV: {CV_METHOD}. Test: "
            f"{TEST_METHOD} ({verdict.n_resamples} resamples; recall, specificity and "
            "precision at each revision's own decision threshold).",
            "",
        ]
    return lines


def tuned_param_lines(base: Snapshot, head: Snapshot) -> list[str]:
    """The tuned hyper-parameters (reports/tuning.json best_params) that changed."""
    old = flatten(base.tuning.get("best_params") or {})
    new = flatten(head.tuning.get("best_params") or {})
    changed = changes(old, new)
    lines = ["### Tuned hyper-parameters that changed", ""]
    if changed:
        lines.append(
            table(
                ["hyper-parameter", "base", "head"],
                ([f"`{c.key}`", format_value(c.old), format_value(c.new)] for c in changed),
            )
        )
    else:
        listed = ", ".join(f"{key}={format_value(value)}" for key, value in sorted(new.items()))
        lines.append(f"None ({listed or 'no tuned hyper-parameters'}).")
    return lines + [""]


def render_markdown(
    base: Snapshot,
    head: Snapshot,
    images: Mapping[str, str],
    verdict: Verdict | None = None,
) -> str:
    """The report: header, verdict, model, tuned hyper-parameters, raw changed metrics,
    changed params, plots, all metrics."""
    metric_changes = changes(base.metrics, head.metrics)
    param_changes = changes(base.params, head.params)
    lines = [
        MARKER,
        f"## Model report: `{base.label}` → `{head.label}`",
        "",
        *verdict_lines(base, head, verdict or Verdict(untested_reason="not computed")),
        table(["", "base", "head"], model_rows(base, head)),
        "",
        *tuned_param_lines(base, head),
        "### Metrics that changed (raw values; the verdict above says which are beyond noise)",
        "",
    ]
    if metric_changes:
        lines.append(
            table(
                ["metric", "base", "head", "change"],
                (
                    [f"`{c.key}`", format_value(c.old), format_value(c.new), format_delta(c.delta)]
                    for c in metric_changes
                ),
            )
        )
    else:
        lines.append("No metric changed.")
    lines += ["", "### Params that changed", ""]
    if param_changes:
        lines.append(
            table(
                ["param", "base", "head"],
                ([f"`{c.key}`", format_value(c.old), format_value(c.new)] for c in param_changes),
            )
        )
    else:
        lines.append("No param changed.")
    if images:
        lines += ["", "### Plots (base dashed grey, head solid red; ◆ = operating point)", ""]
        lines.append(" ".join(f"![{name}]({path})" for name, path in images.items()))
    unchanged = sorted(set(head.metrics) - {c.key for c in metric_changes})
    lines += [
        "",
        f"<details><summary>All metrics ({len(unchanged)} unchanged)</summary>",
        "",
        table(
            ["metric", "base", "head"],
            (
                [
                    f"`{key}`",
                    format_value(base.metrics.get(key)),
                    format_value(head.metrics.get(key)),
                ]
                for key in sorted(set(base.metrics) | set(head.metrics))
            ),
        ),
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def paired_verdict(root: Path, commit: str, *, n_resamples: int, seed: int = 0) -> Verdict:
    """Head (the workspace) against base on the folds and test rows they share."""
    try:
        base = load_run("base", git_reader(root, commit))
        head = load_run("head", directory_reader(root))
    except ComparisonError as error:
        return Verdict(untested_reason=str(error))
    if base.group != head.group:
        return Verdict(
            untested_reason="base and head differ in data, split or CV folds, so nothing is paired"
        )
    tests = paired_tests(head, base, n_resamples=n_resamples, seed=seed)
    return Verdict(tuple(tests), "no shared folds or test predictions", n_resamples)


# --- reading revisions ----------------------------------------------------------------------


def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def resolve_revision(root: Path, revision: str) -> str:
    """The full commit of a revision, or ReportError naming it and how to get it."""
    found = git(root, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if found.returncode != 0:
        raise ReportError(
            f"base revision '{revision}' is not a commit of this repository: "
            "fetch it (git fetch origin <branch>) or pass an existing commit as BASE="
        )
    return found.stdout.strip()


def snapshot(label: str, read: Callable[[str], str | None]) -> Snapshot:
    """Read one revision's outputs through `read(path) -> text or None`."""

    def load_json(path: str) -> dict[str, Any]:
        text = read(path)
        return json.loads(text) if text else {}

    params_text = read(PARAMS_PATH)
    curves = {}
    for curve in CURVES:
        text = read(curve.path)
        if text:
            curves[curve.name] = parse_curve(text)
    metrics = {
        key: value
        for key, value in flatten(load_json(METRICS_PATH)).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    return Snapshot(
        label=label,
        metrics=metrics,
        params=flatten(yaml.safe_load(params_text) or {}) if params_text else {},
        evaluation=load_json(EVALUATION_PATH),
        tuning=load_json(TUNING_PATH),
        curves=curves,
    )


def git_snapshot(root: Path, commit: str, label: str) -> Snapshot:
    return snapshot(label, git_reader(root, commit))


def workspace_snapshot(root: Path) -> Snapshot:
    head = git(root, "rev-parse", "--short", "HEAD").stdout.strip() or "workspace"
    watched = [METRICS_PATH, PARAMS_PATH, *(curve.path for curve in CURVES)]
    dirty = git(root, "status", "--porcelain", "--", *watched).stdout.strip()
    label = f"head {head}" + (" + uncommitted changes" if dirty else "")

    return snapshot(label, directory_reader(root))


# --- writing --------------------------------------------------------------------------------


def render_png(spec: Mapping[str, Any]) -> bytes:
    import vl_convert

    return bytes(vl_convert.vegalite_to_png(vl_spec=dict(spec), scale=2))


def write_report(out: Path, markdown: str, images: Mapping[str, bytes]) -> None:
    """Write the images folder, then the report, each replaced in one rename."""
    image_dir = out.parent / out.stem
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.stem}."))
    staging.chmod(0o755)
    try:
        for name, data in images.items():
            (staging / name).write_bytes(data)
        if image_dir.exists():
            retired = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.stem}.old."))
            os.replace(image_dir, retired / "images")
            shutil.rmtree(retired)
        os.replace(staging, image_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    write_text(out, markdown)


OUTCOME_REPORTS = ("reports/outcomes/validation.md", "reports/outcomes/update.md")
UPDATE_DECISION = "reports/outcomes/update.json"


def outcome_section(root: Path, commit: str) -> str:
    """Outcome labels (stages validate_outcomes and update): the update decision at base and
    head, then head's two reports with their headings one level down; "" when head has none."""
    texts = [(root / path).read_text() for path in OUTCOME_REPORTS if (root / path).is_file()]
    if not texts:
        return ""

    def method(text: str | None) -> str:
        return json.loads(text)["method"].replace("_", " ") if text else "–"

    head_file = root / UPDATE_DECISION
    base_shown = git(root, "show", f"{commit}:{UPDATE_DECISION}")
    lines = [
        "### Outcome labels",
        "",
        f"Update decision: base {method(base_shown.stdout if base_shown.returncode == 0 else None)}"
        f", head {method(head_file.read_text() if head_file.is_file() else None)}.",
        "",
    ]
    for text in texts:
        lines += [
            line.replace("# ", "#### ", 1) if line.startswith("# ") else line
            for line in text.splitlines()
        ]
        lines.append("")
    return "\n".join(lines)


def build_report(root: Path, base_revision: str, out: Path, *, n_resamples: int = 2000) -> str:
    """Compare base with the workspace and write the report; returns its Markdown."""
    commit = resolve_revision(root, base_revision)
    base = git_snapshot(root, commit, f"base {commit[:7]}")
    head = workspace_snapshot(root)
    if not head.metrics:
        raise ReportError(f"{METRICS_PATH} is missing in the workspace: run `make run` first")
    image_dir = out.stem
    images: dict[str, bytes] = {}
    links: dict[str, str] = {}
    for curve in CURVES:
        if curve.name in base.curves or curve.name in head.curves:
            images[f"{curve.name}.png"] = render_png(curve_spec(curve, base, head))
            links[curve.title] = f"{image_dir}/{curve.name}.png"
    verdict = paired_verdict(root, commit, n_resamples=n_resamples)
    markdown = render_markdown(base, head, links, verdict) + outcome_section(root, commit)
    write_report(out, markdown, images)
    return markdown
