"""Every class of bad request gets a 4xx JSON error listing all problems, never a 500.

Each case runs twice: through Flask's test client and against the real server under
gunicorn (the repository's model, 2 workers), since body limits, chunked reading and
error pages differ between the two.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from app.factory import create_app
from tests.app.conftest import RECORD

JSON = {"Content-Type": "application/json"}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def record(**changes: Any) -> dict[str, Any]:
    updated = {**RECORD, **changes}
    return {k: v for k, v in updated.items() if v is not REMOVE}


REMOVE = object()
LIMIT = 1 << 20  # default STROKE_MAX_BODY_BYTES


@dataclass(frozen=True)
class Case:
    """One bad request and what the answer must contain."""

    name: str
    status: int
    data: bytes = b""
    method: str = "POST"
    path: str = "/predict"
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    fields: tuple[str, ...] = ()  # each must be named in details
    mentions: tuple[str, ...] = ()  # each must appear in some detail message


def batch_of(count: int) -> bytes:
    return body({"instances": [RECORD] * count})


CASES = [
    Case("missing field", 400, body(record(age=REMOVE)), fields=("age",), mentions=("0 to 120",)),
    Case("unknown field", 400, body(record(weight=80)), fields=("weight",)),
    Case("string age", 400, body(record(age="67")), fields=("age",), mentions=("0 to 120",)),
    Case("list age", 400, body(record(age=[67])), fields=("age",)),
    Case("object age", 400, body(record(age={"years": 67})), fields=("age",)),
    Case("null required field", 400, body(record(gender=None)), fields=("gender",)),
    Case("boolean binary", 400, body(record(hypertension=True)), fields=("hypertension",)),
    Case("binary out of domain", 400, body(record(heart_disease=2)), fields=("heart_disease",)),
    Case("age above range", 400, body(record(age=130)), fields=("age",), mentions=("0 to 120",)),
    Case("negative age", 400, body(record(age=-1)), fields=("age",)),
    Case(
        "glucose below range",
        400,
        body(record(avg_glucose_level=20)),
        fields=("avg_glucose_level",),
    ),
    Case("bmi above range", 400, body(record(bmi=250)), fields=("bmi",), mentions=("10 to 100",)),
    # json.dumps writes the non-standard NaN / Infinity literals for these floats.
    Case(
        "NaN literal",
        400,
        json.dumps(record(age=float("nan"))).encode(),
        fields=("age",),
        mentions=("finite",),
    ),
    Case(
        "Infinity literal",
        400,
        json.dumps(record(bmi=float("inf"))).encode(),
        fields=("bmi",),
        mentions=("finite",),
    ),
    Case(
        "-Infinity literal",
        400,
        json.dumps(record(avg_glucose_level=float("-inf"))).encode(),
        fields=("avg_glucose_level",),
    ),
    Case("huge integer", 400, body(record(age=10**400)), fields=("age",)),
    Case(
        "category case",
        400,
        body(record(gender="male")),
        fields=("gender",),
        mentions=("'Female', 'Male', 'Other'",),
    ),
    Case(
        "unknown work type",
        400,
        body(record(work_type="Retired")),
        fields=("work_type",),
        mentions=("Never_worked",),
    ),
    Case("lone surrogate", 400, b'{"gender": "\\ud800"}', fields=("gender",)),
    Case(
        "alias and canonical", 400, body(record(residence_type="Urban")), fields=("Residence_type",)
    ),
    Case(
        "several problems at once",
        400,
        body(record(age="x", gender="?", smoking_status=None, colour="red")),
        fields=("age", "gender", "smoking_status", "colour"),
    ),
    Case("malformed JSON", 400, b'{"age": 67,', fields=("(body)",)),
    Case("trailing garbage", 400, body(RECORD) + b"]", fields=("(body)",)),
    Case("not UTF-8", 400, b'{"gender": "\xff\xfe"}', fields=("(body)",), mentions=("UTF-8",)),
    Case("UTF-16 JSON", 400, body(RECORD).decode().encode("utf-16"), fields=("(body)",)),
    Case("empty body", 400, b"", fields=("(body)",)),
    Case("JSON null", 400, b"null", fields=("(body)",)),
    Case("top-level list", 400, body([RECORD]), fields=("(body)",)),
    Case("top-level string", 400, b'"hello"', fields=("(body)",)),
    Case("deeply nested", 400, b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    Case("nested in a field", 400, body(record(age=[[[[[[[[67]]]]]]]])), fields=("age",)),
    Case("empty batch", 400, body({"instances": []}), fields=("instances",)),
    Case("batch not a list", 400, body({"instances": RECORD}), fields=("instances",)),
    Case(
        "batch with extra key", 400, body({"instances": [RECORD], "model": "x"}), fields=("model",)
    ),
    Case("oversized batch", 413, batch_of(1001), fields=("instances",), mentions=("1000",)),
    Case(
        "one bad record in a batch",
        400,
        body({"instances": [RECORD] * 3 + [record(age=300)] + [RECORD]}),
        fields=("instances[3].age",),
    ),
    Case(
        "non-object record in a batch",
        400,
        body({"instances": [RECORD, 5]}),
        fields=("instances[1]",),
    ),
    Case(
        "oversized body", 413, b'{"instances": [' + b" " * (LIMIT + 10) + b"]}", fields=("(body)",)
    ),
    Case(
        "text/plain",
        415,
        body(RECORD),
        headers={"Content-Type": "text/plain"},
        fields=("Content-Type",),
    ),
    Case(
        "form content type",
        415,
        b"age=67",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Case("no content type", 415, body(RECORD), headers={}),
    Case(
        "latin-1 charset",
        415,
        body(RECORD),
        headers={"Content-Type": "application/json; charset=latin-1"},
    ),
    Case("GET /predict", 405, method="GET", headers={}, fields=("(method)",)),
    Case("DELETE /predict", 405, method="DELETE", headers={}),
    Case("POST /health", 405, method="POST", path="/health"),
    Case("PUT /metrics", 405, method="PUT", path="/metrics"),
    Case("unknown route", 404, method="GET", path="/predictions", headers={}),
    Case("unknown POST route", 404, path="/v2/predict"),
    Case("trailing slash", 404, path="/predict/"),
    Case(
        "explain not a boolean",
        400,
        body(RECORD),
        path="/predict?explain=no",
        fields=("explain",),
        mentions=("true or false",),
    ),
    Case("explain empty", 400, body(RECORD), path="/predict?explain=", fields=("explain",)),
    Case(
        "feedback for an unknown id",
        404,
        body({"prediction_id": "0" * 32, "stroke": 1}),
        path="/feedback",
        fields=("prediction_id",),
    ),
    Case(
        "feedback label not 0/1",
        400,
        body({"prediction_id": "0" * 32, "stroke": True, "note": "x"}),
        path="/feedback",
        fields=("stroke", "note"),
    ),
    Case("feedback without JSON", 415, b"stroke=1", path="/feedback", headers={}),
    Case("GET /feedback", 405, method="GET", path="/feedback", headers={}),
]

Send = Callable[[Case], tuple[int, dict[str, str], bytes]]


@pytest.fixture(scope="module")
def flask_send(repo_root: Any, tmp_path_factory: pytest.TempPathFactory) -> Send:

    from app.settings import Settings

    log = tmp_path_factory.mktemp("flask-send") / "predictions.sqlite"
    settings = Settings.for_project(repo_root).replace(monitor_db_path=log)
    client = create_app(settings).test_client()

    def send(case: Case) -> tuple[int, dict[str, str], bytes]:
        response = client.open(case.path, method=case.method, data=case.data, headers=case.headers)
        return response.status_code, dict(response.headers), response.data

    return send


@pytest.fixture(scope="module")
def gunicorn_send(real_server: Any) -> Send:
    session = requests.Session()

    def send(case: Case) -> tuple[int, dict[str, str], bytes]:
        # requests would add a form content type for some bodies; send exactly the case's.
        request = requests.Request(case.method, real_server.url + case.path, data=case.data)
        prepared = session.prepare_request(request)
        prepared.headers.pop("Content-Type", None)
        prepared.headers.update(real_server.auth)
        prepared.headers.update(case.headers)
        response = session.send(prepared, timeout=30)
        return response.status_code, dict(response.headers), response.content

    return send


@pytest.mark.parametrize(
    "transport", ["flask", pytest.param("gunicorn", marks=pytest.mark.integration)]
)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_request_gets_a_json_4xx(case: Case, transport: str, request: Any) -> None:
    send: Send = request.getfixturevalue(f"{transport}_send")
    status, headers, raw = send(case)
    assert status == case.status, raw[:500]
    assert headers["Content-Type"].startswith("application/json")
    document = json.loads(raw)
    assert set(document) == {"error", "details"}
    assert isinstance(document["error"], str) and document["error"]
    assert all(set(d) == {"field", "message"} and d["message"] for d in document["details"])
    named = {detail["field"] for detail in document["details"]}
    assert set(case.fields) <= named, document
    messages = " ".join(detail["message"] for detail in document["details"])
    for text in case.mentions:
        assert text in messages, document
    assert b"Traceback" not in raw and b"<html" not in raw.lower()
    if status == 405:
        assert headers.get("Allow")


def test_every_invalid_field_names_the_allowed_values(flask_send: Send) -> None:
    bad = record(
        gender="x",
        age=500,
        hypertension=3,
        ever_married="maybe",
        work_type=1,
        Residence_type="City",
        avg_glucose_level=1,
        bmi=1,
        smoking_status="",
    )
    status, _, raw = flask_send(Case("all bad", 400, body(bad)))
    details = {d["field"]: d["message"] for d in json.loads(raw)["details"]}
    assert status == 400 and len(details) == 9
    assert "one of 'Female', 'Male', 'Other'" in details["gender"]
    assert "0 to 120 years" in details["age"]
    assert "0 or 1" in details["hypertension"]
    assert "40 to 400 mg/dL" in details["avg_glucose_level"]
    assert "10 to 100 kg/m^2 or null" in details["bmi"]


def test_all_records_of_a_batch_are_reported(flask_send: Send) -> None:
    instances = [record(age=-5), RECORD, record(gender="x", bmi="high")]
    _, _, raw = flask_send(Case("batch", 400, body({"instances": instances})))
    named = [d["field"] for d in json.loads(raw)["details"]]
    assert named == ["instances[0].age", "instances[2].gender", "instances[2].bmi"]


def test_every_message_quotes_the_value_given(flask_send: Send) -> None:
    """As the prepare stage and the batch CLI do: the value itself, not only its type."""
    bad = record(age="abc", hypertension="yes", work_type=1, avg_glucose_level=True, bmi=[1, 2])
    bad["smoking_status"] = "x" * 500
    status, _, raw = flask_send(Case("quoted", 400, body(bad)))
    details = {d["field"]: d["message"] for d in json.loads(raw)["details"]}
    assert status == 400
    assert details["age"] == "must be a number from 0 to 120 years, got 'abc'"
    assert details["hypertension"] == "must be 0 or 1, got 'yes'"
    assert details["work_type"].endswith("; got 1")
    assert details["avg_glucose_level"].endswith("got True")
    assert details["bmi"].endswith("got [1, 2]")
    # A long value is cut, so one message stays one readable line.
    assert "..." in details["smoking_status"] and len(details["smoking_status"]) < 200
