"""The model-family registry: every family's knowledge comes from its one record."""

from __future__ import annotations

from importlib import metadata

import pytest

from stroke_risk.models.environment import MODEL_LIBRARIES, pip_requirements
from stroke_risk.models.families import (
    FAMILIES,
    UnknownFamily,
    family_named,
    family_of_estimator,
    model_tables,
)
from stroke_risk.models.pipelines import build_estimator
from stroke_risk.params import ParamsError
from stroke_risk.reports.model_card import explanation_section


@pytest.mark.parametrize("name", FAMILIES)
def test_a_built_estimator_is_traced_back_to_its_export(name: str) -> None:
    family = FAMILIES[name]
    estimator = build_estimator(name, family.small_params, seed=0)
    assert isinstance(estimator, family.estimator_type())
    # Families that share an estimator class must share its export: the first match answers.
    assert family_of_estimator(estimator).export == family.export
    # What the config may not override is what keeps the export exact.
    overridden = build_estimator(
        name, {**family.small_params, **dict.fromkeys(family.forced_params)}, 0
    )
    for key, value in family.forced_params.items():
        assert overridden.get_params()[key] == value


def test_a_model_of_no_family_has_no_tables() -> None:
    from sklearn.ensemble import ExtraTreesClassifier

    with pytest.raises(TypeError, match="no model family for model type ExtraTreesClassifier"):
        model_tables(ExtraTreesClassifier())


def test_an_unknown_family_is_one_params_line_naming_the_known() -> None:
    with pytest.raises(UnknownFamily) as raised:
        family_named("svm")
    message = str(raised.value)
    assert isinstance(raised.value, ParamsError) and "\n" not in message
    assert "'svm'" in message and all(name in message for name in FAMILIES)


def test_every_family_library_is_a_pinned_model_requirement() -> None:
    pins = pip_requirements()
    for family in FAMILIES.values():
        for library in family.libraries:
            assert library in MODEL_LIBRARIES
            assert f"{library}=={metadata.version(library)}" in pins


@pytest.mark.parametrize("name", FAMILIES)
def test_the_model_card_explains_each_family_with_its_record(name: str) -> None:
    text = "\n".join(explanation_section({"model_family": name}))
    assert FAMILIES[name].explanation in text
    other = "\n".join(explanation_section({"model_family": "no_such_family"}))
    assert "not available for this model family" in other
