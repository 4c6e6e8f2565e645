"""Strict params: an unknown, missing or ill-typed key is one line naming it."""

import pytest
import yaml

from stroke_risk.params import ParamsError, TuneParams, read_section, validate_all
from tests.conftest import REPO_ROOT


@pytest.fixture()
def params() -> dict:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def test_unknown_key_is_named_with_the_known_ones(params):
    params["tune"]["n_trails"] = 5
    with pytest.raises(ParamsError, match=r"unknown param 'tune.n_trails' \(known: tune.n_trials"):
        read_section(params, "tune", TuneParams)


def test_missing_key_and_bad_type_are_named(params):
    del params["tune"]["metric"]
    params["tune"]["n_trials"] = "many"
    with pytest.raises(ParamsError) as caught:
        read_section(params, "tune", TuneParams)
    assert "missing param 'tune.metric'" in str(caught.value)
    assert "param 'tune.n_trials' = 'many'" in str(caught.value)


def test_unknown_section_and_out_of_range_value(params):
    params["tunning"] = {}
    params["split"]["test_size"] = 1.5
    problems = validate_all(params)
    assert any("unknown section 'tunning'" in p for p in problems)
    assert any("split.test_size" in p for p in problems)
