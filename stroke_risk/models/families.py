"""The model families: one record per family, from which everything else derives.

A family is a name (what ``model.family`` and ``-S model=<name>`` pick) and one
``ModelFamily`` record here. Its two ``conf/`` files are found by name
(``conf/model/<name>.yaml``, ``conf/search_space/<name>.yaml``). From the record:

- stroke_risk.models.pipelines builds the estimator (``estimator_class`` with
  ``random_state=seed``, the tuned params and ``forced_params``) and, for a family with
  ``monotonic_cst``, the monotone constraints of the design-matrix columns;
- ``export`` says how the fitted estimator becomes data (stroke_risk.models.tree_tables):
  the serving artifact stores those tables, the service's compiled fast path
  (app/compiled.py) scores them and the explainer (stroke_risk.models.explain) explains
  them. The four table kinds are the representations the service knows; a new family that
  is one of them (an L1 logistic regression, another sum of one function per column) needs
  nothing but its record;
- the model card's explanation text, the libraries its fitted model needs
  (stroke_risk.models.environment: model metadata and MLflow pip requirements), and the small
  configuration the tests fit every family with.

A fitted estimator is traced back to its record by its class (``family_of_estimator``), so
the explainer and the serving export need no family name.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from stroke_risk.models.tree_tables import (
    ModelTables,
    boosted_trees,
    ebm_step_functions,
    forest_tables,
    hgb_step_functions,
    logistic_tables,
)
from stroke_risk.params import ParamsError

MODEL_CONF_DIR = PurePosixPath("conf/model")
SEARCH_SPACE_DIR = PurePosixPath("conf/search_space")


@dataclass(frozen=True)
class ServingExport:
    """How a fitted estimator becomes data-only tables: ``kind`` is the representation
    (the serving artifact's header kind, which selects the compiled scorer and the
    explainer), ``tables`` reads them off a fitted estimator (raising ValueError for a
    variant the representation cannot hold, e.g. a gradient boosting with interactions)."""

    kind: str
    tables: Callable[[Any], ModelTables]


LINEAR = ServingExport("logistic", logistic_tables)
BOOSTED_TREES = ServingExport("xgboost", boosted_trees)
FOREST = ServingExport("forest", forest_tables)
HGB_STEP_FUNCTIONS = ServingExport("steps", hgb_step_functions)
EBM_STEP_FUNCTIONS = ServingExport("steps", ebm_step_functions)


@dataclass(frozen=True)
class ModelFamily:
    """Everything the project knows about one model family."""

    name: str
    # "module:Class" of the estimator, imported only when a model of the family is built.
    estimator_class: str
    export: ServingExport
    # The model card's "Per-prediction explanations" text for this family.
    explanation: str
    # Params the config may not override (they are what makes the export exact).
    forced_params: Mapping[str, Any] = field(default_factory=dict)
    # Whether risk is constrained never to fall along the monotone columns (sklearn's
    # monotonic_cst, set by build_model_pipeline, which knows the column order).
    monotonic_cst: bool = False
    # The widest feature set (stroke_risk.models.pipelines.FEATURE_SETS) the family can be
    # fitted on: one-hot age bands cannot be monotone-constrained.
    widest_feature_set: str = "full"
    # Distributions (beyond the core of stroke_risk.models.environment) a fitted model needs.
    libraries: tuple[str, ...] = ()
    # A small, quick configuration: what the tests fit every family with.
    small_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model_conf(self) -> PurePosixPath:
        """The Hydra option that selects the family (``-S model=<name>``)."""
        return MODEL_CONF_DIR / f"{self.name}.yaml"

    @property
    def search_space(self) -> PurePosixPath:
        """What the tune stage searches (stroke_risk.models.tuning.load_search_space)."""
        return SEARCH_SPACE_DIR / f"{self.name}.yaml"

    def estimator_type(self) -> type:
        """The estimator class (imports its library)."""
        module, name = self.estimator_class.split(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]

    def build_estimator(self, params: Mapping[str, Any], seed: int) -> Any:
        """The bare estimator with its hyperparameters; forced params win over the config."""
        return self.estimator_type()(random_state=seed, **{**params, **self.forced_params})

    def is_estimator(self, model: Any) -> bool:
        """Whether model is of this family's estimator class (without importing a library
        that is not loaded: a model of an unloaded library cannot exist)."""
        module, name = self.estimator_class.split(":")
        loaded = sys.modules.get(module)
        return loaded is not None and isinstance(model, getattr(loaded, name))


FAMILIES: Mapping[str, ModelFamily] = {
    family.name: family
    for family in (
        ModelFamily(
            name="logreg",
            estimator_class="sklearn.linear_model:LogisticRegression",
            export=LINEAR,
            explanation=(
                "coefficient x standardised value, summed per input field (exact). A numeric "
                "field at its training mean contributes 0; a binary field contributes 0 when "
                "absent; a categorical field contributes its category's coefficient. The base "
                "value is the intercept."
            ),
            libraries=("scikit-learn",),
            small_params={"C": 0.5, "max_iter": 2000},
        ),
        ModelFamily(
            name="random_forest",
            estimator_class="sklearn.ensemble:RandomForestClassifier",
            export=FOREST,
            explanation=(
                "decision-path (Saabas) contributions on the probability scale, rescaled per "
                "prediction to sum exactly to the log-odds difference from the forest's base "
                "rate. The total is exact; the split between fields is an approximation."
            ),
            libraries=("scikit-learn",),
            small_params={"n_estimators": 25, "max_depth": 8, "min_samples_leaf": 3, "n_jobs": 1},
        ),
        ModelFamily(
            name="xgboost",
            estimator_class="xgboost:XGBClassifier",
            export=BOOSTED_TREES,
            explanation=(
                "decision-path (Saabas) contributions on the log-odds, XGBoost's own "
                "`approx_contribs`, summed per input field: they add up exactly to the "
                "log-odds; the base value is the base margin plus each tree's cover-weighted "
                "mean leaf value."
            ),
            libraries=("xgboost-cpu",),
            small_params={"n_estimators": 60, "max_depth": 4, "learning_rate": 0.1, "n_jobs": 1},
        ),
        ModelFamily(
            name="ebm",
            estimator_class="interpret.glassbox:ExplainableBoostingClassifier",
            export=EBM_STEP_FUNCTIONS,
            explanation=(
                "the Explainable Boosting Machine's own per-field shape functions, read off "
                "its lookup tables (exact: the model is a sum of one function per field, no "
                "interactions); the base value is its intercept."
            ),
            # A sum of one shape function per column: per-field contributions are exact.
            forced_params={"interactions": 0},
            libraries=("interpret-core",),
            small_params={"outer_bags": 2, "max_rounds": 300, "max_bins": 64, "n_jobs": 1},
        ),
        ModelFamily(
            name="hgb_monotonic",
            estimator_class="sklearn.ensemble:HistGradientBoostingClassifier",
            export=HGB_STEP_FUNCTIONS,
            explanation=(
                "exact per-field contributions: the gradient boosting is constrained to one "
                "field per tree (no interactions), so the log-odds are a sum of one function "
                "per field, each non-decreasing in age, glucose, hypertension and heart "
                "disease."
            ),
            # One column per tree: the log-odds are a sum of one function per column.
            forced_params={"interaction_cst": "no_interactions"},
            monotonic_cst=True,
            widest_feature_set="monotone",
            libraries=("scikit-learn",),
            # 60 rounds of up to 16 leaves; the search space allows up to 400.
            small_params={
                "max_iter": 60,
                "max_leaf_nodes": 16,
                "learning_rate": 0.1,
                "min_samples_leaf": 10,
                "early_stopping": False,
            },
        ),
    )
}


class UnknownFamily(ParamsError):
    """model.family names no record of FAMILIES (a ParamsError: the stages print one line)."""


def family_named(name: str) -> ModelFamily:
    """The record of a family; raise UnknownFamily naming the known ones."""
    if name not in FAMILIES:
        raise UnknownFamily(
            f"param 'model.family' = {name!r}: unknown model family "
            f"(known: {', '.join(FAMILIES)}); add a record to stroke_risk/models/families.py "
            "or fix conf/ or the -S override"
        )
    return FAMILIES[name]


def family_of_estimator(model: Any) -> ModelFamily:
    """The record of a fitted (or unfitted) estimator; TypeError for a class no family uses.

    Families that share an estimator class share its export (checked by the tests), so the
    first match is the answer for every one of them.
    """
    for family in FAMILIES.values():
        if family.is_estimator(model):
            return family
    raise TypeError(f"no model family for model type {type(model).__name__}")


def model_tables(model: Any) -> ModelTables:
    """Return the data-only tables of a fitted estimator of a known family; raise TypeError
    for a model type no family uses and ValueError for a variant its export cannot hold."""
    return family_of_estimator(model).export.tables(model)


def model_libraries() -> tuple[str, ...]:
    """Every family's libraries, in registry order, without repeats."""
    return tuple(dict.fromkeys(lib for family in FAMILIES.values() for lib in family.libraries))
