"""The clinician page through Flask's test client: form from the schema, assets, fallback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import page
from app.page import (
    CONTENT_SECURITY_POLICY,
    STATIC_DIR,
    decision_text,
    form_groups,
    format_percent,
    load_threshold_summary,
    parse_evaluation,
    record_from_form,
    summary_applies,
)
from stroke_risk.data.schema import (
    FEATURE_NAMES,
    FEATURES,
    BinaryField,
    CategoricalField,
    NumericField,
)
from tests.page.conftest import (
    EVALUATION,
    HIGH_RISK_RECORD,
    LOW_RISK_RECORD,
    bare_project,
    form_values,
    page_csrf_token,
    submit,
)
from tests.page.html_tree import Element, parse_html

# The only http(s) URL allowed in an asset: the SVG namespace name, never fetched.
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}
URL_PATTERN = re.compile(r"https?://[^\s\"'<>)]+", re.IGNORECASE)


def get_page(client: FlaskClient) -> Element:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    return parse_html(response.get_data(as_text=True))


def label_of(document: Element, name: str) -> Element:
    labels = document.find_all("label", for_=name)
    assert len(labels) == 1, f"{name}: {len(labels)} labels"
    return labels[0]


def test_every_schema_field_has_a_labelled_control_with_the_schema_domain(
    page_client: FlaskClient,
) -> None:
    document = get_page(page_client)
    form = document.by_id("risk-form")
    controls = [
        e for e in form.iter() if e.tag in {"input", "select"} and e.attrs.get("type") != "hidden"
    ]
    assert [c.attrs["name"] for c in controls] == [
        f.name for group in form_groups() for f in group.fields
    ]
    assert sorted(c.attrs["id"] for c in controls) == sorted(FEATURE_NAMES)
    for spec in FEATURES:
        control = document.by_id(spec.name)
        label = label_of(document, spec.name).text()
        assert label, spec.name
        if isinstance(spec, NumericField):
            assert control.tag == "input" and control.attrs["type"] == "number"
            assert float(control.attrs["min"]) == spec.minimum
            assert float(control.attrs["max"]) == spec.maximum
            assert control.attrs["step"] == "any"  # the API accepts any value in range
            assert spec.unit.replace("^2", "²") in label
            assert ("required" in control.attrs) is not spec.nullable
            hint = document.by_id(f"{spec.name}-hint").text()
            assert spec.name + "-hint" in control.attrs["aria-describedby"].split()
            assert f"{spec.minimum:g}" in hint and f"{spec.maximum:g}" in hint
        else:
            assert control.tag == "select" and "required" in control.attrs
            values = [option.attrs["value"] for option in control.find_all("option")]
            expected = (
                [str(v) for v in spec.values]
                if isinstance(spec, BinaryField)
                else list(spec.categories)
            )
            assert values == ["", *expected], spec.name
        assert document.by_id(f"{spec.name}-error").attrs.keys() >= {"hidden"}
    assert label_of(document, "bmi").text().endswith("optional")


def test_page_has_the_result_regions_and_disclaimer(page_client: FlaskClient) -> None:
    document = get_page(page_client)
    live = document.by_id("result-summary")
    assert live.attrs["aria-live"] == "polite"
    assert "hidden" not in live.attrs  # a live region must exist before it changes
    assert document.by_id("form-errors").attrs.get("tabindex") == "-1"
    assert document.find_all("html")[0].attrs["lang"] == "en"
    disclaimer = document.find_all("aside", class_="disclaimer")[0].text()
    assert "not a diagnosis" in disclaimer
    assert document.by_id("submit-button").attrs["type"] == "submit"
    assert document.by_id("risk-form").attrs["method"] == "post"


def test_page_is_served_with_a_strict_content_security_policy(page_client: FlaskClient) -> None:
    response = page_client.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    document = parse_html(response.get_data(as_text=True))
    for element in document.iter():
        assert "style" not in element.attrs, element.tag
        assert not [a for a in element.attrs if a.startswith("on")], element.tag
        if element.tag == "script":
            assert "src" in element.attrs or element.attrs.get("type") == "application/json"
    assert document.find_all("style") == []


def test_static_assets_are_served(page_client: FlaskClient) -> None:
    document = get_page(page_client)
    urls = [e.attrs["href"] for e in document.find_all("link")] + [
        e.attrs["src"] for e in document.find_all("script") if "src" in e.attrs
    ]
    assert {"/static/page.css", "/static/page.js", "/static/favicon.svg"} <= set(urls)
    types = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
    for url in urls:
        response = page_client.get(url)
        assert response.status_code == 200, url
        assert response.mimetype == types[Path(url).suffix], url
        assert response.get_data() == (STATIC_DIR / Path(url).name).read_bytes()


def test_no_external_urls_in_the_page_or_its_assets(page_client: FlaskClient) -> None:
    texts = {"/": page_client.get("/").get_data(as_text=True)}
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            texts[str(path.relative_to(STATIC_DIR))] = path.read_text(encoding="utf-8")
    for name, text in texts.items():
        found = set(URL_PATTERN.findall(text)) - ALLOWED_URLS
        assert not found, f"{name} refers to {found}"
        assert not re.search(r"""(src|href)\s*=\s*["']//""", text), name
        assert "@import" not in text and "url(//" not in text, name


def test_threshold_figures_come_from_the_evaluation_report(unloaded_client: FlaskClient) -> None:
    document = get_page(unloaded_client)
    info = document.by_id("threshold-info").text()
    assert "at least 8.0%" in info
    assert "flag at least 80% of patients with a recorded stroke" in info
    # The data is cross-sectional (model card): nothing on the page may read as a forecast.
    assert "go on to" not in info and "will happen" not in info
    (disclaimer,) = document.find_all("aside")
    assert "not when" in disclaimer.text() and "does not forecast" in disclaimer.text()
    assert "flagged 81% of patients who had a stroke (sensitivity)" in info
    assert "did not flag 70% of those who did not (specificity)" in info
    assert "sensitivity 78% (95% CI 66–89%)" in info
    assert "specificity 73% (95% CI 70–76%)" in info
    assert "hidden" in document.by_id("threshold-unavailable").attrs


def test_repository_evaluation_report_is_read_at_start_up(page_client: FlaskClient) -> None:
    summary = load_threshold_summary(
        Path(page.__file__).resolve().parents[1] / "reports" / "evaluation.json"
    )
    assert summary is not None
    info = get_page(page_client).by_id("threshold-info").text()
    assert f"{summary.cv_recall * 100:.0f}%" in info
    assert f"at least {format_percent(summary.threshold)}" in info


@pytest.mark.parametrize(
    "evaluation",
    [None, "{not json", {"test": {}}, {"threshold": {"value": "high"}}, []],
    ids=["missing", "malformed", "no-threshold", "bad-value", "not-an-object"],
)
def test_page_degrades_without_a_usable_evaluation_report(tmp_path: Path, evaluation: Any) -> None:
    from app.factory import create_app
    from app.page import init_page

    app = create_app(bare_project(tmp_path, evaluation), load=False, extensions=[init_page])
    document = get_page(app.test_client())
    assert document.find_all(id="threshold-info") == []
    assert "not available" in document.by_id("threshold-unavailable").text()
    assert "hidden" not in document.by_id("threshold-unavailable").attrs


def test_partial_evaluation_report_gives_what_it_has() -> None:
    summary = parse_evaluation({"threshold": {"value": 0.1}})
    assert summary is not None and summary.sentences == (
        "The model flags a patient when the estimated risk is at least 10.0%.",
    )


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        ({"policy": "min_recall", "target_recall": 0.75}, "flag at least 75% of patients"),
        ({"policy": "net_benefit", "harm_benefit_ratio": 0.05}, "follow-up as 0.05 of the"),
        ({"policy": "youden", "target_recall": 0.75}, "sensitivity plus specificity"),
    ],
)
def test_the_policy_sentence_comes_from_the_policy_table(threshold, expected) -> None:
    summary = parse_evaluation({"threshold": {"value": 0.1, **threshold}})
    assert summary is not None and len(summary.sentences) == 2
    assert expected in summary.sentences[1]
    # A policy whose setting is missing from the report gets no sentence rather than a "?".
    if "target_recall" in threshold and threshold["policy"] == "min_recall":
        bare = parse_evaluation({"threshold": {"value": 0.1, "policy": "min_recall"}})
        assert bare is not None and len(bare.sentences) == 1


def test_form_post_without_javascript_shows_the_api_answer(page_client: FlaskClient) -> None:
    for record in (HIGH_RISK_RECORD, LOW_RISK_RECORD):
        api = page_client.post("/predict", json=record).get_json()
        response = submit(page_client, form_values(record))
        assert response.status_code == 200
        document = parse_html(response.get_data(as_text=True))
        assert document.by_id("risk-percent").text() == format_percent(api["stroke_probability"])
        decision = document.by_id("decision")
        assert decision.text() == decision_text(api["stroke_prediction"], api["threshold"])
        expected_class = "decision-positive" if api["stroke_prediction"] else "decision-negative"
        assert expected_class in decision.attrs["class"].split()
        assert document.by_id("model-version").text() == api["model_version"]
        assert re.fullmatch(r"[0-9a-f]{32}", document.by_id("prediction-id").text())
        assert "hidden" not in document.by_id("result-main").attrs
        assert "hidden" not in document.by_id("threshold-info").attrs
        # The submitted values are kept in the form.
        assert document.by_id("age").attrs["value"] == str(record["age"])
        selected = [
            o for o in document.by_id("work_type").find_all("option") if "selected" in o.attrs
        ]
        assert [o.attrs["value"] for o in selected] == [record["work_type"]]
    assert HIGH_RISK_RECORD != LOW_RISK_RECORD


def test_form_post_without_javascript_shows_field_errors_next_to_fields(
    page_client: FlaskClient,
) -> None:
    values = {**form_values(HIGH_RISK_RECORD), "age": "150", "gender": ""}
    response = submit(page_client, values)
    assert response.status_code == 400
    document = parse_html(response.get_data(as_text=True))
    for name, expected in (("age", "out of range"), ("gender", "is required")):
        control, message = document.by_id(name), document.by_id(f"{name}-error")
        assert expected in message.text()
        assert "hidden" not in message.attrs
        assert control.attrs["aria-invalid"] == "true"
        assert f"{name}-error" in control.attrs["aria-describedby"].split()
    assert "aria-invalid" not in document.by_id("bmi").attrs
    summary = document.by_id("form-errors")
    assert "hidden" not in summary.attrs and "autofocus" in summary.attrs
    links = [a.attrs["href"] for a in summary.find_all("a")]
    assert links == ["#gender", "#age"]
    assert "hidden" in document.by_id("result-main").attrs
    assert document.by_id("age").attrs["value"] == "150"


def test_form_post_shows_non_field_errors_in_the_general_area(
    monkeypatch: pytest.MonkeyPatch, page_client: FlaskClient
) -> None:
    monkeypatch.setattr(
        page,
        "predict_in_process",
        lambda record, credential: (
            413,
            {"error": "too large", "details": [{"field": "(body)", "message": "x"}]},
        ),
    )
    document = parse_html(submit(page_client, form_values(HIGH_RISK_RECORD)).get_data(True))
    assert document.by_id("form-errors-list").text() == "(body): x"
    assert not [e for e in document.iter() if e.attrs.get("aria-invalid")]


def test_form_post_with_no_model_loaded_says_so(unloaded_client: FlaskClient) -> None:
    response = submit(unloaded_client, form_values(HIGH_RISK_RECORD))
    assert response.status_code == 503
    text = parse_html(response.get_data(as_text=True)).by_id("form-errors").text()
    assert "model not loaded" in text
    footer = parse_html(unloaded_client.get("/").get_data(as_text=True))
    assert "not loaded" in footer.find_all("footer")[0].text()


def fake_answer(threshold: float, **extra: Any) -> dict[str, Any]:
    return {
        "stroke_probability": 0.2,
        "stroke_prediction": True,
        "threshold": threshold,
        "model_version": "f" * 32,
        "prediction_id": "a" * 32,
        **extra,
    }


def test_risk_factors_are_shown_when_the_api_sends_them(
    monkeypatch: pytest.MonkeyPatch, unloaded_client: FlaskClient
) -> None:
    factors = [
        {"feature": "age", "value": 67.0, "contribution": 1.2},
        {"feature": "bmi", "value": None, "contribution": -0.4},
        {"feature": "work_type", "value": "Govt_job", "contribution": -0.1},
        {"feature": "heart_disease", "value": 1, "contribution": 0.0},
    ]
    monkeypatch.setattr(
        page,
        "predict_in_process",
        lambda record, credential: (200, fake_answer(0.08, risk_factors=factors)),
    )
    document = parse_html(submit(unloaded_client, {}).get_data(as_text=True))
    assert "hidden" not in document.by_id("factors").attrs
    items = document.by_id("factors-list").find_all("li")
    assert [item.text() for item in items] == [
        "Age 67 years raises risk",
        "BMI not given (estimated by the model) lowers risk",
        "Work type Government job lowers risk",
        "Heart disease Yes no effect",
    ]
    assert [item.attrs["class"] for item in items] == [
        "factor factor-raises",
        "factor factor-lowers",
        "factor factor-lowers",
        "factor factor-neutral",
    ]


def test_figures_are_hidden_for_a_threshold_that_was_not_evaluated(
    monkeypatch: pytest.MonkeyPatch, unloaded_client: FlaskClient
) -> None:
    monkeypatch.setattr(
        page, "predict_in_process", lambda record, credential: (200, fake_answer(0.3))
    )
    document = parse_html(submit(unloaded_client, {}).get_data(as_text=True))
    assert "hidden" in document.by_id("threshold-info").attrs
    assert "hidden" not in document.by_id("threshold-unavailable").attrs
    assert "hidden" in document.by_id("factors").attrs
    assert document.by_id("decision").text() == decision_text(True, 0.3)


def test_format_percent() -> None:
    assert format_percent(0.16269333) == "16.3%"
    assert format_percent(0.050751) == "5.1%"
    assert format_percent(0.0004) == "<0.1%"
    assert format_percent(0.0005) == "0.1%"
    assert format_percent(0.9999) == ">99.9%"
    assert format_percent(0.0) == "<0.1%"


def test_summary_applies_within_the_report_rounding() -> None:
    summary = parse_evaluation(EVALUATION)
    assert summary_applies(summary, 0.0800004)
    assert not summary_applies(summary, 0.081)
    assert not summary_applies(None, 0.08)


def test_record_from_form_converts_like_page_js() -> None:
    record = record_from_form(
        {**form_values(HIGH_RISK_RECORD), "bmi": " ", "age": "abc", "avg_glucose_level": "inf"}
    )
    assert record["bmi"] is None
    assert record["age"] == "abc"  # passed through: the API names the field
    assert record["avg_glucose_level"] == "inf"
    assert record["hypertension"] == 0 and isinstance(record["hypertension"], int)
    assert record["smoking_status"] == "formerly smoked"
    assert record_from_form(form_values(HIGH_RISK_RECORD)) == HIGH_RISK_RECORD
    assert set(record_from_form({})) == set(FEATURE_NAMES)


def test_every_schema_field_is_placed_exactly_once() -> None:
    names = [f.name for group in form_groups() for f in group.fields]
    assert sorted(names) == sorted(FEATURE_NAMES)
    categorical = [s for s in FEATURES if isinstance(s, CategoricalField)]
    assert categorical  # the schema has categories for the selects to show


def test_form_post_without_the_pages_token_is_refused(page_client: FlaskClient) -> None:
    """CSRF: another site's form (no token, or a token not matching the cookie) scores nothing."""
    values = form_values(HIGH_RISK_RECORD)
    assert page_client.post("/", data=values).status_code == 403
    page_client.get("/")
    forged = page_client.post("/", data={**values, "csrf_token": "0" * 64})
    assert forged.status_code == 403
    assert "Reload the page" in forged.get_data(as_text=True)
    cross_site = submit(page_client, values, headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403
    assert submit(page_client, values).status_code == 200
    # The page's own form under `Referrer-Policy: no-referrer`: browsers send Origin: null.
    assert submit(page_client, values, headers={"Origin": "null"}).status_code == 200
    assert page_client.post("/", data=values, headers={"Origin": "null"}).status_code == 403


def test_a_csrf_pair_chosen_by_an_attacker_is_refused(page_app: Flask) -> None:
    """The token is an HMAC of the session id under the server's secret: a cookie and
    token an attacker makes up (or takes from another session) do not match."""
    values = form_values(HIGH_RISK_RECORD)
    victim, attacker = page_app.test_client(), page_app.test_client()
    cookie = victim.get("/").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    attackers_token = page_csrf_token(attacker)
    assert victim.post("/", data={**values, "csrf_token": attackers_token}).status_code == 403
    planted = page_app.test_client()
    planted.set_cookie("stroke_session", "0" * 32 + "..9999999999." + "0" * 64)
    assert planted.post("/", data={**values, "csrf_token": "0" * 64}).status_code == 403
    assert submit(victim, values).status_code == 200
