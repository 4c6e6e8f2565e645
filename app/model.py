"""Load the verified model revision and build what the endpoints score and explain with.

The service reads only the data-only serving artifact (stroke_risk/models/serving_artifact.py),
never the pickled pipeline: nothing it loads can run code.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from app.artifacts import (
    UNRELEASED,
    ArtifactError,
    VerifiedArtifacts,
    display_path,
    find_release,
    read_serving_artifact,
    verify_artifacts,
)
from app.columns import FeatureColumns
from app.compiled import (
    CompiledModel,
    ProbabilityModel,
    UnsupportedPipeline,
    check_probe,
    compile_serving,
)
from app.explanations import build_explainer, explain_columns
from app.settings import Settings

if TYPE_CHECKING:
    from stroke_risk.models.explain import MatrixExplainer
    from stroke_risk.models.serving_artifact import ServingModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scores:
    """What one request's records scored: P(stroke), decisions and, if asked, explanations.

    contributions[i, j] is field FEATURE_NAMES[j]'s log-odds contribution to row i; None
    when explanations were not asked for or the model has none. base_value plus a row's
    contributions is that row's log-odds (see app/explanations.py).
    """

    probability: np.ndarray
    decision: np.ndarray
    contributions: np.ndarray | None = None
    base_value: float | None = None


@dataclass(frozen=True)
class LoadedModel:
    """The model answering requests, its decision threshold and what identifies it."""

    scorer: ProbabilityModel
    version: str
    family: str
    threshold: float
    git_commit: str | None
    metadata: dict[str, Any]
    training_metrics: dict[str, Any] | None
    load_seconds: float
    explainer: MatrixExplainer | None = None
    # The release (releases.json) that shipped this model and metadata, or "unreleased".
    release: str = UNRELEASED

    def predict(self, columns: FeatureColumns) -> tuple[np.ndarray, np.ndarray]:
        """Return (P(stroke) float64, decision bool) per row; positive when P >= threshold."""
        probability = self.scorer.predict_proba(columns)
        return probability, probability >= self.threshold

    def score(self, columns: FeatureColumns, *, explain: bool) -> Scores:
        """Return the rows' scores, with per-field contributions when explain and available."""
        if not explain or self.explainer is None:
            probability, decision = self.predict(columns)
            return Scores(probability, decision)
        probability, explanation = explain_columns(self.explainer, self.scorer, columns)
        return Scores(
            probability,
            probability >= self.threshold,
            explanation.contributions,
            explanation.base_value,
        )

    def reference_positive_rate(self) -> float | None:
        """Return the out-of-fold positive rate at the threshold recorded at training.

        Uses threshold_cv_metrics.positive_rate, else derives it from prevalence, recall
        and specificity; None when the metadata has neither.
        """
        cv = self.metadata.get("threshold_cv_metrics") or {}
        if isinstance(cv.get("positive_rate"), (int, float)):
            return float(cv["positive_rate"])
        prevalence = self.metadata.get("training_prevalence")
        recall, specificity = cv.get("recall"), cv.get("specificity")
        if (
            isinstance(prevalence, (int, float))
            and isinstance(recall, (int, float))
            and isinstance(specificity, (int, float))
        ):
            return float(prevalence * recall + (1 - prevalence) * (1 - specificity))
        return None

    def version_info(self) -> dict[str, Any]:
        """Return the /version document."""
        return {
            "model_version": self.version,
            "release": self.release,
            "model_family": self.family,
            "git_commit": self.git_commit,
            "threshold": self.threshold,
            "threshold_policy": self.metadata.get("threshold_policy"),
            "threshold_cv_metrics": self.metadata.get("threshold_cv_metrics"),
            "training_metrics": self.training_metrics,
            "inference": self.scorer.kind,
            "explanations": self.explainer is not None,
        }


def build_scorer(model: ServingModel) -> CompiledModel:
    """Return the fast path of the serving model once it reproduces the pipeline's
    probabilities recorded in the artifact; raise UnsupportedPipeline otherwise."""
    compiled = compile_serving(model)
    difference = check_probe(compiled, model)
    logger.info(
        "served path %s reproduces the pipeline's recorded probabilities (max |diff| %.2g)",
        compiled.kind,
        difference,
    )
    return compiled


def load_model(
    settings: Settings, artifacts: VerifiedArtifacts | None = None, *, explain: bool = True
) -> LoadedModel:
    """Return the model of the working tree's revision, verified against dvc.lock (and, with
    a trusted key, against its release signature).

    With explain, also builds its explainer (app/explanations.py) for /predict's risk
    factors. Raises app.artifacts.ArtifactError (one line) when it cannot be served.
    """
    started = time.perf_counter()
    if not settings.use_compiled_path:
        logger.warning(
            "STROKE_COMPILED_PATH=0 is ignored: the service serves the data-only artifact and "
            "holds no sklearn pipeline to fall back to"
        )
    artifacts = artifacts or verify_artifacts(settings)
    serving_model = read_serving_artifact(artifacts, settings)
    try:
        scorer = build_scorer(serving_model)
    except UnsupportedPipeline as reason:
        raise ArtifactError(
            f"{display_path(settings.model_path, settings)} cannot be served ({reason}); "
            "run `make run` to rebuild it"
        ) from None
    explainer = build_explainer(serving_model, scorer) if explain else None
    metadata = artifacts.metadata
    loaded = LoadedModel(
        scorer=scorer,
        version=serving_model.pipeline_md5 or artifacts.model_md5,
        family=str(metadata["model_family"]),
        threshold=float(metadata["decision_threshold"]),
        git_commit=artifacts.git_commit,
        metadata=metadata,
        training_metrics=artifacts.training_metrics,
        load_seconds=time.perf_counter() - started,
        explainer=explainer,
        release=find_release(settings, serving_model.pipeline_md5, artifacts.metadata_md5),
    )
    logger.info(
        "serving model %s (%s, %s, threshold %.6g, %s) loaded in %.2f s",
        loaded.version,
        loaded.release,
        loaded.family,
        loaded.threshold,
        scorer.kind,
        loaded.load_seconds,
    )
    if settings.trusted_key is None:
        logger.warning(
            "model authenticity is not checked (no STROKE_TRUSTED_KEY): any model matching "
            "dvc.lock is served"
        )
    return loaded
