"""The clinician page in a real headless Chromium against the real app under gunicorn.

The browser is the suite's one fixture (tests/browser.py).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from app.page import decision_text, format_number, format_percent, risk_factor_views
from stroke_risk.data.schema import FEATURES, NumericField
from tests.app.conftest import Server
from tests.browser import TIMEOUT_MS
from tests.page.conftest import HIGH_RISK_RECORD, LOW_RISK_RECORD, artifact_dir

pytestmark = pytest.mark.e2e


@pytest.fixture
def page(browser: Any, page_server: Server) -> Iterator[Any]:
    """A fresh page on the form; records script errors and console errors on it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=page_server.url)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.problems = []  # type: ignore[attr-defined]
    tab.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
    tab.on(
        "console",
        lambda message: (
            tab.problems.append(f"console: {message.text}")
            if message.type == "error" and "status of 400" not in message.text
            else None
        ),
    )
    sign_in(tab, page_server.extra["tokens"]["dr-grey"])
    try:
        yield tab
    finally:
        context.close()


def sign_in(tab: Any, token: str) -> None:
    """Sign in on the page's sign-in form as a clinician does; the risk form then shows."""
    tab.goto("/")
    tab.fill("#token", token)
    tab.click("#login-button")
    tab.wait_for_selector("#risk-form")


def fill_form(tab: Any, record: dict[str, Any]) -> None:
    """Fill every field the way a user would (empty for a missing bmi)."""
    for spec in FEATURES:
        value = record[spec.name]
        if value is None:
            text = ""
        elif isinstance(spec, NumericField):
            text = format_number(value)
        else:
            text = str(value)
        if isinstance(spec, NumericField):
            tab.fill(f"#{spec.name}", text)
        else:
            tab.select_option(f"#{spec.name}", text)


def save_screenshot(tab: Any, directory: Path, name: str) -> Path:
    """Full-page screenshot in directory, copied to the artifact dir when one is set."""
    path = directory / name
    tab.screenshot(path=str(path), full_page=True)
    target = artifact_dir()
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / name)
    return path


def api_answer(server: Server, record: dict[str, Any]) -> dict[str, Any]:
    token = server.extra["tokens"]["dr-grey"]
    response = requests.post(
        f"{server.url}/predict",
        json=record,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def factor_texts(tab: Any) -> list[str]:
    """The risk factors as the page shows them, one line each."""
    return tab.eval_on_selector_all(
        "#factors-list li", "items => items.map(i => i.innerText.replace(/\\s+/g, ' ').trim())"
    )


def expected_factor_texts(answer: dict[str, Any]) -> list[str]:
    return [
        f"{view.label} {view.value} {view.direction_text}"
        for view in risk_factor_views(answer["risk_factors"])
    ]


def test_keyboard_order_follows_the_form(page: Any) -> None:
    """Tab from the heading visits every field in form order, then the two buttons."""
    expected = page.eval_on_selector_all(
        "#risk-form input:not([type=hidden]), #risk-form select, #risk-form button",
        "els => els.map(e => e.id)",
    )
    page.focus("#form-heading")
    visited = []
    for _ in expected:
        page.keyboard.press("Tab")
        visited.append(page.evaluate("document.activeElement.id"))
    assert visited == expected
    outline = page.eval_on_selector("#reset-button", "e => getComputedStyle(e).outlineStyle")
    assert outline != "none", "focused control has no visible outline"


def test_the_page_shows_the_api_answer_and_field_errors(
    page: Any, page_server: Server, tmp_path: Path
) -> None:
    # A patient above the threshold: the page shows exactly what /predict answers.
    fill_form(page, HIGH_RISK_RECORD)
    page.click("#submit-button")
    page.wait_for_selector("#result-main", state="visible")
    answer = api_answer(page_server, HIGH_RISK_RECORD)
    assert answer["stroke_prediction"] is True
    assert page.inner_text("#risk-percent") == format_percent(answer["stroke_probability"])
    assert page.inner_text("#decision") == decision_text(True, answer["threshold"])
    assert "decision-positive" in page.get_attribute("#decision", "class")
    assert page.inner_text("#model-version") == answer["model_version"]
    assert page.is_visible("#threshold-info") and not page.is_visible("#threshold-unavailable")
    assert "specificity" in page.inner_text("#threshold-info")
    # The real risk factors of this patient, as the server-side view formats them.
    assert len(answer["risk_factors"]) == 3
    assert page.is_visible("#factors")
    assert factor_texts(page) == expected_factor_texts(answer)
    assert page.get_attribute("#result-summary", "aria-live") == "polite"
    save_screenshot(page, tmp_path, "page.png")

    # Changing an input marks the shown estimate as stale until it is resubmitted.
    page.fill("#bmi", "")
    assert page.is_visible("#result-stale")

    # A patient below the threshold (bmi left empty: imputed by the model).
    fill_form(page, LOW_RISK_RECORD)
    page.click("#submit-button")
    low = api_answer(page_server, LOW_RISK_RECORD)
    assert low["stroke_prediction"] is False
    expected = format_percent(low["stroke_probability"])
    page.wait_for_function(
        "expected => document.getElementById('risk-percent').textContent === expected", arg=expected
    )
    assert page.inner_text("#decision") == decision_text(False, low["threshold"])
    assert "decision-negative" in page.get_attribute("#decision", "class")
    assert not page.is_visible("#result-stale")
    assert factor_texts(page) == expected_factor_texts(low)

    # An out-of-range age, past the browser's own max check: the server's message is shown
    # next to the age field and the stale result disappears.
    page.eval_on_selector("#age", "element => element.removeAttribute('max')")
    page.fill("#age", "150")
    page.click("#submit-button")
    page.wait_for_selector("#age-error", state="visible")
    assert "150 is out of range" in page.inner_text("#age-error")
    assert page.get_attribute("#age", "aria-invalid") == "true"
    assert "age-error" in page.get_attribute("#age", "aria-describedby").split()
    assert page.get_attribute("#gender", "aria-invalid") is None
    assert page.is_visible("#form-errors")
    assert page.evaluate("document.activeElement.id") == "form-errors"
    assert not page.is_visible("#result-main")
    save_screenshot(page, tmp_path, "page-error.png")

    # The error summary link takes the keyboard to the field; fixing it clears the error.
    page.click("#form-errors-list a")
    assert page.evaluate("document.activeElement.id") == "age"
    page.fill("#age", "34")
    page.click("#submit-button")
    page.wait_for_selector("#result-main", state="visible")
    assert not page.is_visible("#age-error")
    assert page.get_attribute("#age", "aria-invalid") is None
    assert not page.is_visible("#form-errors")

    # Clear empties every field and the result.
    page.click("#reset-button")
    assert page.input_value("#age") == "" and page.input_value("#gender") == ""
    assert not page.is_visible("#result-main") and page.is_visible("#result-empty")
    assert page.problems == []  # type: ignore[attr-defined]


def test_risk_factors_and_an_unevaluated_threshold_are_rendered(page: Any, tmp_path: Path) -> None:
    """The answer is the real one plus risk_factors and another threshold (route rewrite)."""
    factors = [
        {"feature": "age", "value": 67.0, "contribution": 1.1},
        {"feature": "avg_glucose_level", "value": 228.69, "contribution": 0.52},
        {"feature": "smoking_status", "value": "never smoked", "contribution": -0.2},
    ]

    def rewrite(route: Any) -> None:
        response = route.fetch()
        body = {**response.json(), "risk_factors": factors, "threshold": 0.5}
        body["stroke_prediction"] = body["stroke_probability"] >= 0.5
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/predict", rewrite)
    fill_form(page, HIGH_RISK_RECORD)
    page.keyboard.press("Enter")  # submitting from the keyboard works too
    page.wait_for_selector("#factors", state="visible")
    texts = page.eval_on_selector_all(
        "#factors-list li", "items => items.map(i => i.innerText.replace(/\\s+/g, ' ').trim())"
    )
    assert texts == [
        "Age 67 years raises risk",
        "Average glucose level 228.69 mg/dL raises risk",
        "Smoking status Never smoked lowers risk",
    ]
    classes = page.eval_on_selector_all("#factors-list li", "items => items.map(i => i.className)")
    assert classes == ["factor factor-raises", "factor factor-raises", "factor factor-lowers"]
    assert page.inner_text("#decision") == decision_text(False, 0.5)
    assert not page.is_visible("#threshold-info")
    assert page.is_visible("#threshold-unavailable")
    save_screenshot(page, tmp_path, "page-factors.png")
    assert page.problems == []  # type: ignore[attr-defined]


def test_the_page_works_without_javascript(browser: Any, page_server: Server) -> None:
    context = browser.new_context(java_script_enabled=False, base_url=page_server.url)
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        sign_in(tab, page_server.extra["tokens"]["dr-grey"])
        fill_form(tab, HIGH_RISK_RECORD)
        tab.click("#submit-button")
        tab.wait_for_selector("#result-main", state="visible")
        answer = api_answer(page_server, HIGH_RISK_RECORD)
        assert tab.inner_text("#risk-percent") == format_percent(answer["stroke_probability"])
        assert tab.inner_text("#decision") == decision_text(True, answer["threshold"])
        assert factor_texts(tab) == expected_factor_texts(answer)
    finally:
        context.close()


def test_a_clinician_signs_in_scores_and_signs_out(browser: Any, page_server: Server) -> None:
    """Unsigned, the page offers only the sign-in form and /predict refuses the browser;
    a wrong token or one without scope predict is refused; signed in, the form scores
    through the session (its cookie plus the CSRF header page.js sends); signing out
    ends it."""
    tokens = page_server.extra["tokens"]
    context = browser.new_context(base_url=page_server.url)
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto("/")
        assert tab.is_visible("#login-form") and tab.query_selector("#risk-form") is None
        anonymous = tab.evaluate(
            "fetch('/predict', {method: 'POST', headers: {'Content-Type': 'application/json'},"
            " body: '{}'}).then(r => r.status)"
        )
        assert anonymous == 401
        for token, message in (
            ("srk_wrong", "this access token is not known"),
            (tokens["lab-feed"], "'lab-feed' lacks scope 'predict'"),
        ):
            tab.fill("#token", token)
            tab.click("#login-button")
            assert message in tab.inner_text("#form-errors-list")
            assert tab.query_selector("#risk-form") is None
        tab.fill("#token", tokens["dr-grey"])
        tab.click("#login-button")
        tab.wait_for_selector("#risk-form")
        assert tab.inner_text("#signed-in-name") == "dr-grey"
        cookie = next(c for c in context.cookies() if c["name"] == "stroke_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        # The session cookie without the page's CSRF header authorises nothing.
        bare = tab.evaluate(
            "fetch('/predict', {method: 'POST', headers: {'Content-Type': 'application/json'},"
            " body: '{}'}).then(r => r.json())"
        )
        assert bare["details"][0]["field"] == "X-CSRF-Token"
        fill_form(tab, HIGH_RISK_RECORD)
        tab.click("#submit-button")
        tab.wait_for_selector("#result-main", state="visible")
        answer = api_answer(page_server, HIGH_RISK_RECORD)
        assert tab.inner_text("#risk-percent") == format_percent(answer["stroke_probability"])
        tab.click("#logout-button")
        tab.wait_for_selector("#login-form")
        assert tab.query_selector("#risk-form") is None
    finally:
        context.close()
