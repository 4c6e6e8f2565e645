"""`dvc plots show` / `dvc plots diff` pages draw with no network (vendored Vega stack).

The repository's `.dvc/config` points `plots.html_template` at plots_offline/template.html;
these tests use the plain DVC commands in a scratch copy, then open the page in headless
Chromium with every non-file request refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from plots_offline.build import PACKAGE_DIR, TEMPLATE_PATH, sha256, vendored_scripts
from tests.conftest import REPO_ROOT
from tests.page.conftest import artifact_dir
from tests.team.conftest import run, scratch_repo

pytestmark = pytest.mark.e2e
# The top-level `plots:` of dvc.yaml.
PLOT_IDS = [
    "roc",
    "precision_recall",
    "calibration",
    "confusion",
    "importance",
    "decision_curve",
]
# Data marks are coloured; axes, grid and text are grey: a plot drew its data when its
# rendered marks (svg or canvas alike) hold enough saturated pixels.
SATURATED_PIXELS_MIN = 150


def saturated_pixels(png: bytes) -> int:
    """Pixels whose channels differ by more than 60 (colour, not grey or white)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


def test_template_inlines_the_pinned_packages_with_their_licences() -> None:
    template = TEMPLATE_PATH.read_text()
    pins = json.loads((PACKAGE_DIR / "package.json").read_text())["dependencies"]
    scripts = vendored_scripts(template)
    assert [s["name"] for s in scripts] == ["vega", "vega-lite", "vega-embed"]
    for script in scripts:
        assert script["version"] == pins[script["name"]]
        assert script["sha256"] == sha256(script["code"]), f"{script['name']} edited by hand"
        assert len(script["code"]) > 50_000
        licence = REPO_ROOT / script["license_file"]
        assert licence.is_file() and "Redistribution" in licence.read_text()
    assert "{plot_divs}" in template
    # No {scripts} placeholder: DVC would otherwise add its CDN <script src=...> tags.
    assert "{scripts}" not in template
    assert not re.search(r"<script[^>]+src=", template)


def test_confusion_template_is_dvcs_with_the_counts_shown() -> None:
    from plots_offline.templates import CONFUSION_COUNTS_PATH, confusion_counts_template, render

    assert CONFUSION_COUNTS_PATH.read_text() == render(confusion_counts_template()), (
        "plots_offline/confusion_counts.json is stale: run python -m plots_offline.templates"
    )


def plot_spec(page: Path, plot_id: str) -> dict[str, Any]:
    """The vega-lite spec DVC wrote into the page for one plot."""
    text = page.read_text()
    end = text.index(f"vegaEmbed('#{plot_id}', spec)")
    start = text.rindex("var spec = ", 0, end) + len("var spec = ")
    return json.loads(text[start:end].strip().rstrip(";"))


def test_plots_carry_their_reference_lines_and_counts(plot_pages: dict[str, Path]) -> None:
    def fields(plot_id: str) -> set[str]:
        values = plot_spec(plot_pages["show"], plot_id)["data"]["values"]
        return {row.get("field") for row in values if isinstance(row, dict)}

    assert {"tpr", "chance"} <= fields("roc")
    assert {"observed_rate", "perfect"} <= fields("calibration")
    assert {"model", "treat_all", "treat_none"} <= fields("decision_curve")
    confusion = plot_spec(plot_pages["show"], "confusion")
    (show_values,) = [p for p in confusion["params"] if p["name"] == "showValues"]
    assert show_values["value"] is True
    # The diagonal is the diagonal: chance equals the false-positive rate on every row.
    roc = [row for row in plot_spec(plot_pages["show"], "roc")["data"]["values"]]
    chance = [row for row in roc if row["field"] == "chance"]
    assert chance and all(row["chance"] == row["fpr"] for row in chance)


def test_dvc_config_uses_the_offline_template() -> None:
    shown = run(["dvc", "config", "plots.html_template"], REPO_ROOT).stdout.strip()
    assert (REPO_ROOT / ".dvc" / shown).resolve() == TEMPLATE_PATH


@pytest.fixture(scope="module")
def plot_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`dvc plots show` and `dvc plots diff HEAD` pages written by the plain commands."""
    root = scratch_repo(tmp_path_factory.mktemp("plots-repo"))
    pages = {}
    for name, command in {
        "show": ["dvc", "plots", "show", "-o", "out-show"],
        "diff": ["dvc", "plots", "diff", "HEAD", "-o", "out-diff"],
    }.items():
        run(command, root, timeout=120)
        pages[name] = root / command[-1] / "index.html"
        assert pages[name].is_file()
    return pages


def open_offline(browser: Any, page_path: Path) -> tuple[Any, Any, list[str]]:
    """Open a page with every request but file:// refused; returns (context, tab, problems)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
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
    tab.goto(page_path.as_uri())
    return context, tab, problems


@pytest.mark.parametrize("kind", ["show", "diff"])
def test_every_plot_draws_offline(browser: Any, plot_pages: dict[str, Path], kind: str) -> None:
    context, tab, problems = open_offline(browser, plot_pages[kind])
    try:
        tab.wait_for_function(
            "(ids) => ids.every((id) => document.querySelector(`#${id} .marks`))",
            arg=PLOT_IDS,
            timeout=20_000,
        )
        drawn = {
            plot_id: saturated_pixels(
                tab.locator(f"#{plot_id} :is(svg, canvas).marks").first.screenshot()
            )
            for plot_id in PLOT_IDS
        }
        folder = artifact_dir()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(folder / f"dvc-plots-{kind}-offline.png"), full_page=True)
    finally:
        context.close()
    assert problems == []
    blank = {name: count for name, count in drawn.items() if count < SATURATED_PIXELS_MIN}
    assert blank == {}, f"plots without data marks (saturated pixels): {blank}"
