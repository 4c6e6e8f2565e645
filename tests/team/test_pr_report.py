"""`python -m stroke_risk.commands.pr_report` (what `make pr-report BASE=...` runs), for real.

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

from stroke_risk.evaluation.comparison import CV_METHOD, TEST_METHOD, PairedTest
from stroke_risk.reports.pr_report import (
    CURVES,
    MARKER,
    Change,
    Snapshot,
    Verdict,
    changes,
    curve_spec,
    format_value,
    render_markdown,
)
from stroke_risk.run_files import flatten
from tests.team.conftest import BASE_TARGET_RECALL, HEAD_TARGET_RECALL, copy_repo, git, run


@pytest.fixture(scope="module")
def two_commit_repo(two_commit_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the session's two_commit_repo: the reports are written into it."""
    return copy_repo(two_commit_repo, tmp_path_factory.mktemp("pr-report") / "repo")


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
    assert flatten({"test": {"roc_auc": 0.8}, "n": 3}, separator="_") == {
        "test_roc_auc": 0.8,
        "n": 3,
    }
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


def snapshot(
    label: str,
    recall: float,
    target: float,
    best_params: dict | None = None,
    extra_metrics: dict | None = None,
) -> Snapshot:
    return Snapshot(
        label=label,
        metrics={
            "test.recall": recall,
            "test.specificity": 0.7,
            "test.roc_auc": 0.84,
            **(extra_metrics or {}),
        },
        params={"threshold.target_recall": target, "model.family": "logreg"},
        evaluation={},
        tuning={"family": "logreg", "best_params": best_params or {"C": 0.1, "max_iter": 5000}},
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


def test_the_verdict_leads_with_what_changed_beyond_noise_and_its_direction() -> None:
    tests = (
        PairedTest("cv.brier", "brier", "CV", 0.0004, 0.0001, 0.0007, 0.019, CV_METHOD),
        PairedTest("cv.roc_auc", "roc_auc", "CV", -0.0054, -0.013, 0.0021, 0.15, CV_METHOD),
        PairedTest("test.recall", "recall", "test", -0.2, -0.3, -0.1, 0.0004, TEST_METHOD),
    )
    base = snapshot("base a", 0.8, 0.8, extra_metrics={"cv.brier": 0.0429})
    head = snapshot(
        "head b",
        0.6,
        0.6,
        best_params={"C": 0.5, "max_iter": 5000},
        extra_metrics={
            "cv.brier": 0.0433,
            "cv.roc_auc_nested": 0.8312,
            "cv.roc_auc_nested_std": 0.021,
        },
    )
    markdown = render_markdown(base, head, {}, Verdict(tests, n_resamples=2000))
    lead = markdown.split("### Verdict", 1)[1].split("|", 1)[0]
    assert markdown.index("### Verdict") < markdown.index("### Metrics that changed")
    # Worse Brier (higher) and worse recall, named with difference, CI and p; AUC is noise.
    assert "**CV Brier worse** +0.0004 (+0.0001 to +0.0007), p 0.019" in lead
    assert "**test recall worse** -0.2000 (-0.3000 to -0.1000), p <0.001" in lead
    assert "Within noise: CV ROC AUC." in lead
    verdict = report_rows(markdown, "Verdict")
    assert verdict["cv.roc_auc"][-1] == "no significant change"
    assert verdict["cv.brier"][:2] == ["0.0429", "0.0433"]
    # The nested-CV estimate: a row when present, "–" where a revision lacks it.
    assert verdict["cv.roc_auc_nested` ± sd"][:2] == ["–", "0.8312 ± 0.0210"]
    assert report_rows(markdown, "Tuned hyper-parameters that changed") == {
        "hyper-parameter": ["base", "head"],
        "C": ["0.1", "0.5"],
    }


def test_without_paired_tests_the_verdict_says_why() -> None:
    markdown = render_markdown(
        snapshot("base a", 0.8, 0.8),
        snapshot("head b", 0.8, 0.8),
        {},
        Verdict(untested_reason="base: reports/tuning.json not found"),
    )
    assert "No paired tests: base: reports/tuning.json not found." in markdown
    assert "None (C=0.1, max_iter=5000)." in markdown


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
        ["python", "-m", "stroke_risk.commands.pr_report", "--base", base, "--out", out],
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
    print(markdown)  # shown by pytest -rP
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
    # The verdict: the threshold moved recall and specificity beyond noise, in opposite
    # directions; nothing that does not depend on the threshold moved at all.
    verdict = report_rows(markdown, "Verdict")
    lead = markdown.split("### Verdict", 1)[1].split("|", 1)[0]
    assert "**test recall worse**" in lead and "**test specificity better**" in lead
    for key in ("test.recall", "test.specificity"):
        old, new, difference, p, _ = verdict[key]
        # The paired test re-scores the committed predictions at each revision's threshold:
        # it must land on the metrics evaluate committed.
        assert float(difference.split()[0]) == pytest.approx(head[key] - base[key], abs=1e-4)
        assert p == "<0.001"
    for key in ("cv.roc_auc", "cv.brier", "test.roc_auc", "test.brier"):
        assert verdict[key][2].startswith("+0.0000") and verdict[key][-1] == "no significant change"
    # The nested-CV estimate does not depend on the threshold: shown, and the same on both.
    nested = f"{base['cv.roc_auc_nested']:.4f} ± {base['cv.roc_auc_nested_std']:.4f}"
    assert verdict["cv.roc_auc_nested` ± sd"][:2] == [nested, nested]
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
