"""Optuna study over a model family's search space, scored by repeated stratified CV.

By default the study lives in memory: its result is a pure function of code, data and
params, so `dvc.lock` does not depend on any local history. With `tune.storage` set to a
SQLAlchemy URL the study persists, resumes and can be shared by workers
(`python -m stroke_risk.commands.tuning_worker ...`); the result then records exactly which trials
it came from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedKFold

from stroke_risk.code_deps import files_digest, import_closure
from stroke_risk.data.features import FeatureConfig
from stroke_risk.models.families import SEARCH_SPACE_DIR, family_named
from stroke_risk.models.pipelines import (
    CVResult,
    build_model_pipeline,
    cross_validate_pipeline,
    fold_metrics,
    suggest_params,
)
from stroke_risk.models.reproducible_fit import fit_reproducibly

# Metrics where lower is better; everything else is maximised.
MINIMISED_METRICS = {"brier"}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class TuningError(ValueError):
    """A study cannot be used as asked (incompatible stored study, unreachable storage)."""


@dataclass(frozen=True)
class CVSettings:
    n_splits: int
    n_repeats: int
    seed: int


@dataclass(frozen=True)
class StudySpec:
    """Everything that gives a trial its meaning; equal specs may share trials."""

    family: str
    fixed_params: Mapping[str, Any]
    search_space: Mapping[str, Mapping[str, Any]]
    cv: CVSettings
    feature_config: FeatureConfig
    metric: str
    sampler_seed: int
    model_seed: int
    train_sha256: str
    code_sha256: str = field(default="")

    def fingerprint(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), sort_keys=True, default=str))


@dataclass(frozen=True)
class StudyResult:
    study_name: str
    storage: str  # "in-memory" or the URL with any password hidden
    best_params: dict[str, Any]
    best_trial: int
    best_value: float
    trials_used: list[int]


def load_search_space(family: str, root: Path = PROJECT_ROOT) -> tuple[dict, dict]:
    """(fixed params, search space) of a family from its conf/search_space/<family>.yaml;
    UnknownFamily for a name without a record (stroke_risk.models.families)."""
    path = root / family_named(family).search_space
    if not path.is_file():
        known = sorted(p.stem for p in (root / SEARCH_SPACE_DIR).glob("*.yaml"))
        raise TuningError(f"model.family '{family}' has no {path.name} (known: {known})")
    config = yaml.safe_load(path.read_text()) or {}
    return dict(config.get("fixed") or {}), dict(config["search_space"])


def tuning_code_sha256(root: Path = PROJECT_ROOT) -> str:
    """Digest of every project file a trial runs: changed code never reuses old scores."""
    return files_digest(import_closure(["stroke_risk.models.tuning"], root), root)


def study_name(family: str, fingerprint: Mapping[str, Any]) -> str:
    """Stable name: the same spec gives the same study, so a persistent study resumes.

    Anything that changes what a trial means is in the fingerprint, so a changed setting
    starts a fresh study instead of mixing incomparable trials.
    """
    digest = hashlib.sha256(
        json.dumps(fingerprint, sort_keys=True, default=str).encode()
    ).hexdigest()
    return f"stroke-{family}-{digest[:12]}"


def redact_storage(storage: str | None) -> str:
    """The storage URL fit for a report or a log line: no password."""
    if storage is None:
        return "in-memory"
    from sqlalchemy.engine import make_url

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by Optuna; never echo it raw
        return "<unparsable storage URL>"


def evaluate_params(
    family: str,
    params: Mapping[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    cv: CVSettings,
    feature_config: FeatureConfig,
    seed: int,
    n_jobs: int = 1,
) -> CVResult:
    """Cross-validate one parameter set of a family on the training split."""
    return cross_validate_pipeline(
        lambda: build_model_pipeline(family, params, feature_config=feature_config, seed=seed),
        X,
        y,
        n_splits=cv.n_splits,
        n_repeats=cv.n_repeats,
        seed=cv.seed,
        n_jobs=n_jobs,
    )


def _objective(spec: StudySpec, X: pd.DataFrame, y: np.ndarray, n_jobs: int) -> Any:
    def objective(trial: Any) -> float:
        params = {**spec.fixed_params, **suggest_params(trial, spec.search_space)}
        result = evaluate_params(
            spec.family,
            params,
            X,
            y,
            cv=spec.cv,
            feature_config=spec.feature_config,
            seed=spec.model_seed,
            n_jobs=n_jobs,
        )
        trial.set_user_attr("roc_auc_std", result.std("roc_auc"))
        return result.mean(spec.metric)

    return objective


def open_study(
    spec: StudySpec,
    *,
    storage: str | None,
    name: str,
    sampler_seed: int,
    constant_liar: bool = True,
) -> Any:
    """Create or load the study; refuse a stored study of the same name with another spec.

    TPE with the constant liar: the trials other workers are running count as scored (with
    the worst score) when this worker samples, so workers sharing a study do not pick the
    same or nearly the same parameter set at once (benchmarks/tuning.py measures the share
    of duplicates with and without). Said explicitly, not left to Optuna's default; it
    changes nothing in a sequential in-memory study (no other trial is running).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction: Literal["minimize", "maximize"] = (
        "minimize" if spec.metric in MINIMISED_METRICS else "maximize"
    )
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction=direction,
            sampler=optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=constant_liar),
            load_if_exists=True,
        )
    except Exception as error:  # SQLAlchemy/driver errors: name the storage, not the secret
        reason = str(error).splitlines()[0][:200]
        raise TuningError(
            f"tune.storage {redact_storage(storage)} is not usable ({reason}); check the URL, "
            "that the database is running and reachable, and the credentials"
        ) from None
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", spec.fingerprint())
    elif stored != spec.fingerprint():
        differing = sorted(
            k
            for k in stored.keys() | spec.fingerprint().keys()
            if stored.get(k) != spec.fingerprint().get(k)
        )
        raise TuningError(
            f"study '{name}' in {redact_storage(storage)} was made with a different "
            f"{', '.join(differing)}; use another study name or delete that study"
        )
    return study


def run_trials(
    spec: StudySpec,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    storage: str | None,
    name: str,
    n_trials: int,
    n_jobs: int,
    worker_index: int = 0,
    show_progress_bar: bool = False,
    constant_liar: bool = True,
) -> Any:
    """Add n_trials trials to the study (a worker's job); returns the study.

    The sampler is seeded from the spec's seed, the worker index and the number of trials
    already stored, so a resumed or parallel worker does not repeat earlier trials.
    """
    probe = open_study(spec, storage=storage, name=name, sampler_seed=spec.sampler_seed)
    seed = spec.sampler_seed + 1_000_003 * worker_index + len(probe.trials)
    study = open_study(
        spec, storage=storage, name=name, sampler_seed=seed, constant_liar=constant_liar
    )
    if n_trials > 0:
        study.optimize(
            _objective(spec, X, y, n_jobs),
            n_trials=n_trials,
            show_progress_bar=show_progress_bar,
            catch=(),
        )
    return study


def run_study(
    spec: StudySpec,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    n_trials: int,
    n_jobs: int,
    storage: str | None = None,
    show_progress_bar: bool = True,
) -> StudyResult:
    """Run the tune stage's study and return its best of the first n_trials complete trials.

    In memory (storage None) this is deterministic. With a storage, missing trials are added
    until n_trials are complete; the result uses exactly the first n_trials complete trials
    by number (listed in `trials_used`), so a study that once ran more does not leak a
    better, untracked result.
    """
    import optuna

    name = study_name(spec.family, spec.fingerprint())
    study = open_study(spec, storage=storage, name=name, sampler_seed=spec.sampler_seed)
    complete = _complete_trials(study)
    if len(complete) < n_trials:
        study = run_trials(
            spec,
            X,
            y,
            storage=storage,
            name=name,
            n_trials=n_trials - len(complete),
            n_jobs=n_jobs,
            show_progress_bar=show_progress_bar,
        )
        complete = _complete_trials(study)
    used = complete[:n_trials]
    pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
    best = pick(used, key=lambda trial: (trial.value, -trial.number))
    return StudyResult(
        study_name=name,
        storage=redact_storage(storage),
        best_params={**spec.fixed_params, **best.params},
        best_trial=best.number,
        best_value=float(best.value),
        trials_used=[trial.number for trial in used],
    )


def _complete_trials(study: Any) -> list[Any]:
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return sorted(complete, key=lambda trial: trial.number)


@dataclass(frozen=True)
class NestedCVSettings:
    """Outer folds around the whole search, and the (cheaper) inner CV each search uses."""

    outer_splits: int
    inner_splits: int
    inner_repeats: int
    seed: int


@dataclass(frozen=True)
class OuterFold:
    fold: int
    held_out_rows: list[int]  # positions in the data: never seen by this fold's search
    selected_params: dict[str, Any]
    inner_score: float  # the search's best inner-CV score (optimistic by selection)
    scores: dict[str, float]  # the selected params refitted, scored on the held-out rows


@dataclass(frozen=True)
class NestedCVResult:
    folds: list[OuterFold]

    def mean(self, metric: str) -> float:
        return float(np.mean([fold.scores[metric] for fold in self.folds]))

    def std(self, metric: str) -> float:
        """Sample standard deviation across outer folds (ddof=1)."""
        return float(np.std([fold.scores[metric] for fold in self.folds], ddof=1))


ParamSearch = Callable[[pd.DataFrame, np.ndarray], tuple[dict[str, Any], float]]
PipelineFactory = Callable[[Mapping[str, Any]], Any]


def nested_cross_validate(
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    search: ParamSearch,
    make_pipeline: PipelineFactory,
    outer_splits: int,
    seed: int,
    n_jobs: int = 1,
) -> NestedCVResult:
    """Nested CV of a whole tuning procedure: an honest estimate of the tuned model.

    For each stratified outer fold, search(X_fit, y_fit) -> (params, inner score) sees only
    the outer-training rows; make_pipeline(params) is fitted on those rows and scored on
    the held-out rows. The mean held-out score carries no selection optimism, unlike the
    best trial's CV score. Outer folds run in n_jobs processes; each is a pure function of
    its rows and seeds, so results do not depend on n_jobs.
    """
    splitter = StratifiedKFold(n_splits=outer_splits, shuffle=True, random_state=seed)
    folds = list(splitter.split(X, y))
    outcomes = Parallel(n_jobs=n_jobs)(
        delayed(_outer_fold)(search, make_pipeline, X, y, fit_index, held_out)
        for fit_index, held_out in folds
    )
    return NestedCVResult(
        [
            OuterFold(
                fold=index,
                held_out_rows=[int(row) for row in held_out],
                selected_params=params,
                inner_score=inner_score,
                scores=scores,
            )
            for index, ((_, held_out), (params, inner_score, scores)) in enumerate(
                zip(folds, outcomes, strict=True)
            )
        ]
    )


def _outer_fold(
    search: ParamSearch,
    make_pipeline: PipelineFactory,
    X: pd.DataFrame,
    y: np.ndarray,
    fit_index: np.ndarray,
    held_out: np.ndarray,
) -> tuple[dict[str, Any], float, dict[str, float]]:
    X_fit, y_fit = X.iloc[fit_index], y[fit_index]
    params, inner_score = search(X_fit, y_fit)
    fitted = fit_reproducibly(make_pipeline(params), X_fit, y_fit)
    probability = fitted.predict_proba(X.iloc[held_out])[:, 1]
    return params, float(inner_score), fold_metrics(y[held_out], probability)


def nested_tuning_cv(
    spec: StudySpec,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    settings: NestedCVSettings,
    n_trials: int,
    n_jobs: int,
) -> NestedCVResult:
    """Nested CV around the tune stage's own search: in each outer fold, the same Optuna
    study (family, search space, sampler seed, metric, n_trials) in memory, with the inner
    CV of settings, on the outer-training rows only."""
    inner = replace(
        spec, cv=CVSettings(settings.inner_splits, settings.inner_repeats, spec.cv.seed)
    )
    return nested_cross_validate(
        X,
        y,
        search=partial(_search_best, inner, n_trials),
        make_pipeline=partial(_tuned_pipeline, spec.family, spec.feature_config, spec.model_seed),
        outer_splits=settings.outer_splits,
        seed=settings.seed,
        n_jobs=n_jobs,
    )


def nested_cv_method(settings: NestedCVSettings, n_trials: int) -> str:
    """One sentence naming the method, for the report files and the model card."""
    repeats = "" if settings.inner_repeats == 1 else f" x {settings.inner_repeats}-repeat"
    return (
        f"nested CV: {settings.outer_splits} stratified outer folds; in each, the tune "
        f"stage's Optuna search ({n_trials} trials, {settings.inner_splits}-fold{repeats} "
        "stratified inner CV) on the outer-training part only, the chosen params refitted "
        "there and scored on the held-out part; mean ± sd (ddof=1) over outer folds"
    )


def tuning_report(
    study: StudyResult, best: CVResult, *, spec: StudySpec, n_trials: int
) -> dict[str, Any]:
    """reports/tuning.json: best params, the trials they came from, the best params' CV
    summary (mean and sd per metric) and per-fold scores."""
    cv: dict[str, float] = {}
    for name in ("roc_auc", "average_precision", "brier"):
        cv[name] = round(best.mean(name), 6)
        cv[f"{name}_std"] = round(best.std(name), 6)
    return {
        "study_name": study.study_name,
        "study": {
            "storage": study.storage,
            "trials_used": study.trials_used,
            "best_trial": study.best_trial,
        },
        "family": spec.family,
        "metric": spec.metric,
        "n_trials": n_trials,
        "best_params": study.best_params,
        "cv": cv,
        "fold_scores": [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fold.items()}
            for fold in best.fold_scores
        ],
    }


def nested_cv_report(
    result: NestedCVResult,
    *,
    family: str,
    metric: str,
    settings: NestedCVSettings,
    n_trials: int,
) -> dict[str, Any]:
    """reports/nested_cv.json: the method, mean ± sd per metric and each outer fold."""
    summary: dict[str, Any] = {}
    for name in ("roc_auc", "average_precision", "brier"):
        summary[name] = round(result.mean(name), 6)
        summary[f"{name}_std"] = round(result.std(name), 6)
    return {
        "method": nested_cv_method(settings, n_trials),
        "family": family,
        "metric": metric,
        "n_trials": n_trials,
        "settings": asdict(settings),
        "nested": summary,
        "outer_folds": [
            {
                "fold": fold.fold,
                "held_out_rows": len(fold.held_out_rows),
                "inner_best": round(fold.inner_score, 6),
                "selected_params": fold.selected_params,
                **{name: round(value, 6) for name, value in fold.scores.items()},
            }
            for fold in result.folds
        ],
    }


def _search_best(
    spec: StudySpec, n_trials: int, X: pd.DataFrame, y: np.ndarray
) -> tuple[dict[str, Any], float]:
    result = run_study(spec, X, y, n_trials=n_trials, n_jobs=1, show_progress_bar=False)
    return result.best_params, result.best_value


def _tuned_pipeline(
    family: str, feature_config: FeatureConfig, seed: int, params: Mapping[str, Any]
) -> Any:
    return build_model_pipeline(family, params, feature_config=feature_config, seed=seed)


def study_spec_from_params(params: Mapping[str, Any], train_path: str) -> StudySpec:
    """The StudySpec the tune stage builds from params.yaml (shared with the worker CLI)."""
    from stroke_risk.data.load import file_sha256
    from stroke_risk.data.prepared import feature_config_from_params
    from stroke_risk.params import (
        CVParams,
        FeaturizeParams,
        ModelParams,
        TrainParams,
        TuneParams,
        read_section,
    )

    model = read_section(params, "model", ModelParams)
    tune = read_section(params, "tune", TuneParams)
    cv = read_section(params, "cv", CVParams)
    featurize = read_section(params, "featurize", FeaturizeParams)
    train = read_section(params, "train", TrainParams)
    fixed, space = load_search_space(model.family)
    return StudySpec(
        family=model.family,
        fixed_params=fixed,
        search_space=space,
        cv=CVSettings(**cv.model_dump()),
        feature_config=feature_config_from_params(featurize.model_dump()),
        metric=tune.metric,
        sampler_seed=tune.sampler_seed,
        model_seed=train.seed,
        train_sha256=file_sha256(train_path),
        code_sha256=tuning_code_sha256(),
    )
