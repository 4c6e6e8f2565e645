"""`python -m stroke_risk.pr_report` (what `make pr-report BASE=...` runs), for real.

A scratch repository with two commits, each reproduced by `dvc repro`: the second lowers
threshold.target_recall, so the test recall and precision change and the report must show
both values of each. The pure parts are tested on small inputs.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from stroke_risk.pr_report import (
    CURVES,
    MARKER,
    Change,
    Snapshot,
    changes,
    curve_spec,
    flatten,
    format_value,
    render_markdown,
)
from tests.team.conftest import BASE_TARGET_RECALL, HEAD_TARGET_RECALL, git, run


def report_rows(markdown: str, section: str) -> dict[str, list[str]]:
    """{first cell: other cells} of the table under a '### section' heading."""
    body = markdown.split(f"### {section}", 1)[1].split("###", 1)[0]
    rows = {}
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= {"-"}:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def committed_metrics(root: Path, revision: str) -> dict[str, float]:
    return flatten(json.loads(git(root, "show", f"{revision}:reports/metrics.json")))


# --- pure functions -------------------------------------------------------------------------


def test_flatten_and_changes_list_changed_added_and_removed_keys() -> None:
    old = flatten({"a": {"b": 1, "c": [1, 2]}, "gone": 3})
    new = flatten({"a": {"b": 2, "c": [1, 2]}, "added": 4})
    assert old == {"a.b": 1, "a.c": [1, 2], "gone": 3}
    assert changes(old, new) == [
        Change("a.b", 1, 2),
        Change("added", None, 4),
        Change("gone", 3, None),
    ]
    assert Change("a.b", 0.8, 0.6).delta == pytest.approx(-0.2)
    assert Change("a.c", [1], [2]).delta is None


def test_format_value_keeps_small_values_readable() -> None:
    assert format_value(0.800000) == "0.8"
    assert format_value(0.050751) == "0.0508"
    assert format_value(0.000123) == "0.000123"
    assert format_value(None) == "—"
    assert format_value([18, 40]) == "`[18, 40]`"


def snapshot(label: str, recall: float, target: float) -> Snapshot:
    return Snapshot(
        label=label,
        metrics={"test.recall": recall, "test.specificity": 0.7, "test.roc_auc": 0.84},
        params={"threshold.target_recall": target, "model.family": "logreg"},
        evaluation={},
        tuning={"family": "logreg"},
        curves={"roc": [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 1.0, "tpr": 1.0}]},
    )


def test_render_markdown_shows_both_values_and_the_delta() -> None:
    markdown = render_markdown(snapshot("base a", 0.8, 0.8), snapshot("head b", 0.6, 0.6), {})
    assert markdown.startswith(MARKER)
    assert report_rows(markdown, "Metrics that changed") == {
        "metric": ["base", "head", "change"],
        "test.recall": ["0.8", "0.6", "-0.2000"],
    }
    assert report_rows(markdown, "Params that changed")["threshold.target_recall"] == [
        "0.8",
        "0.6",
    ]


def test_curve_spec_overlays_both_revisions_with_operating_points() -> None:
    roc = next(curve for curve in CURVES if curve.name == "roc")
    spec = curve_spec(roc, snapshot("base a", 0.8, 0.8), snapshot("head b", 0.6, 0.6))
    lines, points = spec["layer"][1], spec["layer"][2]
    assert {row["revision"] for row in lines["data"]["values"]} == {
        "base a (roc_auc 0.840)",
        "head b (roc_auc 0.840)",
    }
    operating = {p["revision"]: (p["fpr"], p["tpr"]) for p in points["data"]["values"]}
    assert operating == {
        "base a (roc_auc 0.840)": (pytest.approx(0.3), 0.8),
        "head b (roc_auc 0.840)": (pytest.approx(0.3), 0.6),
    }


# --- the real thing ---------------------------------------------------------------------------


def pr_report(root: Path, base: str, out: str = "pr-report.md"):
    return run(
        ["python", "-m", "stroke_risk.pr_report", "--base", base, "--out", out],
        root,
        check=False,
        timeout=120,
    )


@pytest.mark.e2e
def test_report_shows_what_the_threshold_change_did(two_commit_repo: Path) -> None:
    root = two_commit_repo
    result = pr_report(root, "HEAD~1")
    assert result.returncode == 0, result.stderr
    markdown = (root / "pr-report.md").read_text()
    base, head = committed_metrics(root, "HEAD~1"), committed_metrics(root, "HEAD")
    assert base["test.recall"] != head["test.recall"]
    metrics = report_rows(markdown, "Metrics that changed")
    for key in ("test.recall", "test.precision", "test.threshold"):
        old, new, delta = metrics[key]
        assert (float(old), float(new)) == (
            pytest.approx(base[key], abs=5e-5),
            pytest.approx(head[key], abs=5e-5),
        ), key
        assert float(delta) == pytest.approx(head[key] - base[key], abs=1e-4)
    # Nothing upstream of the threshold moved.
    assert not any(key.startswith("cv.") for key in metrics)
    assert "test.roc_auc" not in metrics
    params = report_rows(markdown, "Params that changed")
    assert params == {
        "param": ["base", "head"],
        "threshold.target_recall": [str(BASE_TARGET_RECALL), str(HEAD_TARGET_RECALL)],
    }
    header = markdown.splitlines()[1]
    assert re.search(r"`base [0-9a-f]{7}` → `head [0-9a-f]{7}`", header), header
    assert "decision threshold" in markdown and "**changed**" in markdown
    for curve in CURVES:
        link = f"pr-report/{curve.name}.png"
        assert f"]({link})" in markdown
        image = Image.open(io.BytesIO((root / link).read_bytes()))
        assert image.size[0] > 400 and image.size[1] > 400
        # Both revisions drawn: the base's grey and the head's red are on the image.
        colours = {rgb for _, rgb in image.convert("RGB").getcolors(maxcolors=1 << 20)}
        assert (140, 140, 140) in colours and (214, 39, 40) in colours, curve.name


@pytest.mark.e2e
def test_unknown_base_writes_nothing_and_says_so(two_commit_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    result = pr_report(two_commit_repo, "no-such-branch", str(out))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no-such-branch" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.e2e
def test_a_failed_run_leaves_the_previous_report(two_commit_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    assert pr_report(two_commit_repo, "HEAD~1", str(out)).returncode == 0
    before = out.read_text()
    images = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert pr_report(two_commit_repo, "deadbeef", str(out)).returncode == 2
    assert out.read_text() == before
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == images
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "report.md"]
