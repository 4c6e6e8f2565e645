"""The offline drift report opened in a real headless Chromium with the network refused.

The browser is the suite's one fixture (tests/browser.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stroke_risk.data.schema import FEATURE_NAMES
from tests.monitoring.test_drift_report import aged, write_csv

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report_page(
    tmp_path_factory: pytest.TempPathFactory,
    reference_profile: dict[str, Any],
    training_records: list[dict[str, Any]],
) -> Path:
    """The page `python -m stroke_risk.commands.drift_report --data` writes for aged patients."""
    directory = tmp_path_factory.mktemp("drift-report")
    data = write_csv(
        directory / "aged.csv", aged(training_records[:1000], 25), columns=list(FEATURE_NAMES)
    )
    reference = directory / "reference_profile.json"
    reference.write_text(json.dumps(reference_profile))
    page = directory / "report.html"
    result = subprocess.run(
        [sys.executable, "-m", "stroke_risk.commands.drift_report", "--data", str(data)]
        + ["--reference", str(reference), "--out", str(page)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return page


def test_the_report_renders_its_table_and_figures_offline(browser: Any, report_page: Path) -> None:
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    problems: list[str] = []

    def refuse_network(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            problems.append(f"network request: {route.request.url}")
            route.abort()

    context.route("**/*", refuse_network)
    tab = context.new_page()
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        tab.goto(report_page.as_uri())
        rows = tab.locator("#fields tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
        )
        # Every drawn bar of every figure, with its on-screen size, per figure.
        bars = tab.evaluate(
            """() => [...document.querySelectorAll('figure')].map(figure => ({
                id: figure.id || figure.dataset.field,
                visible: figure.getBoundingClientRect().height > 50,
                bars: [...figure.querySelectorAll('g.mark-rect path')]
                    .map(p => p.getBoundingClientRect())
                    .filter(box => box.width > 0 && box.height > 0).length,
            }))"""
        )
        auc_text = tab.locator("#multivariate-auc strong").inner_text()
    finally:
        context.close()
    assert problems == []
    assert [row[0] for row in rows] == list(FEATURE_NAMES)
    by_field = {row[0]: row for row in rows}
    assert by_field["age"][4] == "significant" and float(by_field["age"][3]) > 0.2
    assert {by_field[name][4] for name in FEATURE_NAMES if name != "age"} <= {"stable", "moderate"}
    assert by_field["age"][5] == "KS" and by_field["gender"][5] == "chi-square"
    assert float(auc_text) > 0.8
    figures = {figure["id"]: figure for figure in bars}
    assert set(figures) == {*FEATURE_NAMES, "multivariate-figure"}
    assert all(figure["visible"] for figure in figures.values()), figures
    # Aged patients fill the upper age bins only: fewer current than reference bars there,
    # but one drawn bar per non-empty share on each side.
    assert figures["multivariate-figure"]["bars"] == 1
    assert figures["gender"]["bars"] >= 4, figures
    assert figures["age"]["bars"] > 10, figures
