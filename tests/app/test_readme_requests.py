"""The request examples and field lists the READMEs show are the schema's current fields.

The READMEs show whole /predict records in curl examples and list each field's allowed
values by hand; adding an input field to stroke_risk/data/schema.py makes them answer 400
or leave the field out. These tests fail until the READMEs name every field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from stroke_risk.data.schema import FEATURE_NAMES, validate_record
from tests.conftest import REPO_ROOT

READMES = ("README.md", "app/README.md")
FENCED_BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
PREDICT_BODY = re.compile(r"curl [^\n]*?/predict .*?-d '(\{.*?\})'", re.DOTALL)
ALLOWED_VALUES_INTRO = "Allowed values come from `stroke_risk/data/schema.py`:"


@dataclass(frozen=True)
class PredictExample:
    """One curl /predict example: where it is, its JSON body and the answer shown after it."""

    where: str
    body: Any
    answer: str  # the ```json block right after the command's block ("" if none)


def predict_examples(readme: str) -> list[PredictExample]:
    """Every `curl ... /predict ... -d '{...}'` in readme's bash blocks, with its answer."""
    text = (REPO_ROOT / readme).read_text(encoding="utf-8")
    blocks = list(FENCED_BLOCK.finditer(text))
    examples: list[PredictExample] = []
    for index, block in enumerate(blocks):
        if block.group(1) != "bash":
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        answer = ""
        if following and following.group(1) == "json" and following.start() == block.end() + 1:
            answer = following.group(2)
        line = text.count("\n", 0, block.start()) + 1
        for match in PREDICT_BODY.finditer(block.group(2)):
            examples.append(PredictExample(f"{readme}:{line}", json.loads(match.group(1)), answer))
    return examples


EXAMPLES = [example for readme in READMES for example in predict_examples(readme)]


def test_the_readmes_show_predict_examples() -> None:
    # A guard for the parser: the record, the batch and the error example of app/README.md
    # and the serving example of README.md.
    assert len(EXAMPLES) == 4, [example.where for example in EXAMPLES]
    assert sum('"error"' in example.answer for example in EXAMPLES) == 1


def records_of(body: Any) -> list[Any]:
    return body["instances"] if isinstance(body, dict) and "instances" in body else [body]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.where)
def test_each_example_names_the_current_fields(example: PredictExample) -> None:
    """A valid example validates; the error example's errors are the ones its answer lists."""
    records = records_of(example.body)
    errors = {
        (f"instances[{index}]." if "instances" in example.body else "") + error.field
        for index, record in enumerate(records)
        for error in validate_record(record).errors
    }
    shown = set(re.findall(r'"field": "([^"]+)"', example.answer))
    assert errors == shown, f"{example.where}: the validator reports {sorted(errors)}"


def test_the_allowed_values_list_names_every_field() -> None:
    text = (REPO_ROOT / "app" / "README.md").read_text(encoding="utf-8")
    assert ALLOWED_VALUES_INTRO in text
    listed = text.split(ALLOWED_VALUES_INTRO, 1)[1].split("\n\n", 2)[1]
    names = [
        name
        for bullet in listed.splitlines()
        for name in re.findall(r"`([^`]+)`", bullet.split(":", 1)[0])
    ]
    assert names == list(FEATURE_NAMES)


def test_the_readme_introduction_lists_every_field() -> None:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"stroke risk from \w+ routine fields \(([^)]*)\)", text)
    assert listed, "README.md no longer introduces the fields"
    assert re.split(r",\s*", listed.group(1)) == list(FEATURE_NAMES)
