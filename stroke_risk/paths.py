"""Where the pipeline's artifacts live: each path spelled once, relative to the repository root.

The stages' defaults, the service's settings, release, MLflow logging and the report tools
read these names. `STAGE_OUTPUTS` and `STAGE_INPUTS` say which stage writes and reads each
artifact; tests/pipeline/test_artifact_paths.py holds them equal to dvc.yaml's outs and
deps, so moving a file is one edit here plus the matching edit of dvc.yaml, checked.
"""

from __future__ import annotations

from typing import Final

PARAMS: Final = "params.yaml"
DVC_LOCK: Final = "dvc.lock"

# prepare
PREPARED_TRAIN: Final = "data/prepared/train.csv"
PREPARED_TEST: Final = "data/prepared/test.csv"
DATA_SUMMARY: Final = "reports/data_summary.json"
# featurize
FEATURES_TRAIN: Final = "data/features/train.csv"
REFERENCE_PROFILE: Final = "models/reference_profile.json"
# tune
OOF_PREDICTIONS: Final = "data/oof/oof_predictions.csv"
TUNING_REPORT: Final = "reports/tuning.json"
# validate_tuning
NESTED_CV_REPORT: Final = "reports/nested_cv.json"
# instability
INSTABILITY_SUMMARY: Final = "reports/instability.json"
INSTABILITY_TABLE: Final = "reports/instability.csv"
# train: the pickled pipeline (stages, MLflow), its data-only copy (the one file the service
# loads) and its metadata (threshold, params, feature config).
MODEL: Final = "models/model.joblib"
SERVING_MODEL: Final = "models/serving_model.npz"
MODEL_METADATA: Final = "models/model_metadata.json"
# evaluate
METRICS: Final = "reports/metrics.json"
EVALUATION: Final = "reports/evaluation.json"
TEST_PREDICTIONS: Final = "reports/test_predictions.csv"
PLOTS_DIR: Final = "reports/plots"
# The plot tables evaluate writes into PLOTS_DIR (`dvc plots` draws them, report reads them).
PLOT_TABLES: Final = (
    "roc",
    "pr",
    "calibration",
    "confusion",
    "importance",
    "calibration_smooth",
    "calibration_smooth_cv",
    "decision_curve",
)
# report
MODEL_CARD: Final = "reports/model_card.md"
TRIPOD_REPORT: Final = "reports/tripod_ai.md"
FIGURES_DIR: Final = "reports/figures"

# The outcome-label loop (README "Outcome labels"): labels collected from the service's log
# (patient data, written by `make collect-labels`, not by a stage), then validate and update.
OUTCOMES_DIR: Final = "data/outcomes"
OUTCOME_REPORTS_DIR: Final = "reports/outcomes"
OUTCOME_VALIDATION: Final = "reports/outcomes/validation.json"
OUTCOME_VALIDATION_TEXT: Final = "reports/outcomes/validation.md"
OUTCOME_CALIBRATION: Final = "reports/plots/outcome_calibration.csv"
UPDATE_REPORT: Final = "reports/outcomes/update.json"
UPDATE_REPORT_TEXT: Final = "reports/outcomes/update.md"
# The update judged on the held-out labels (stroke_risk/updating/holdout.py): what the
# release gates read for `make release MODEL=updated` (figures only: no patient rows).
UPDATE_HOLDOUT: Final = "reports/outcomes/update_holdout.json"
UPDATED_DIR: Final = "models/updated"
UPDATED_MODEL: Final = "models/updated/model.joblib"
UPDATED_SERVING_MODEL: Final = "models/updated/serving_model.npz"
UPDATED_MODEL_METADATA: Final = "models/updated/model_metadata.json"

# Inputs no stage writes (besides the raw data, a param): they come from outside the pipeline.
EXTERNAL_INPUTS: Final = (OUTCOMES_DIR,)


def plot_table(name: str) -> str:
    """The CSV of plot table `name` (one of PLOT_TABLES) under PLOTS_DIR."""
    return f"{PLOTS_DIR}/{name}.csv"


# What each stage writes (dvc.yaml outs and metrics).
STAGE_OUTPUTS: Final[dict[str, tuple[str, ...]]] = {
    "prepare": (PREPARED_TRAIN, PREPARED_TEST, DATA_SUMMARY),
    "featurize": (FEATURES_TRAIN, REFERENCE_PROFILE),
    "tune": (OOF_PREDICTIONS, TUNING_REPORT),
    "validate_tuning": (NESTED_CV_REPORT,),
    "instability": (INSTABILITY_SUMMARY, INSTABILITY_TABLE),
    "train": (MODEL, SERVING_MODEL, MODEL_METADATA),
    "evaluate": (
        METRICS,
        EVALUATION,
        TEST_PREDICTIONS,
        *(plot_table(name) for name in PLOT_TABLES),
    ),
    "report": (MODEL_CARD, TRIPOD_REPORT, FIGURES_DIR),
    "validate_outcomes": (OUTCOME_VALIDATION, OUTCOME_VALIDATION_TEXT, OUTCOME_CALIBRATION),
    "update": (
        UPDATE_REPORT,
        UPDATE_REPORT_TEXT,
        UPDATE_HOLDOUT,
        UPDATED_MODEL,
        UPDATED_SERVING_MODEL,
        UPDATED_MODEL_METADATA,
    ),
}

# The artifacts of other stages each stage reads (dvc.yaml deps other than code, conf/ and
# the raw data).
STAGE_INPUTS: Final[dict[str, tuple[str, ...]]] = {
    "prepare": (),
    "featurize": (PREPARED_TRAIN,),
    "tune": (FEATURES_TRAIN,),
    "validate_tuning": (FEATURES_TRAIN,),
    "instability": (FEATURES_TRAIN, TUNING_REPORT),
    "train": (FEATURES_TRAIN, OOF_PREDICTIONS, TUNING_REPORT),
    "evaluate": (
        PREPARED_TRAIN,
        PREPARED_TEST,
        MODEL,
        MODEL_METADATA,
        TUNING_REPORT,
        DATA_SUMMARY,
        OOF_PREDICTIONS,
        NESTED_CV_REPORT,
        INSTABILITY_SUMMARY,
    ),
    "report": (
        MODEL_METADATA,
        METRICS,
        EVALUATION,
        DATA_SUMMARY,
        INSTABILITY_TABLE,
        *(plot_table(name) for name in PLOT_TABLES if name != "confusion"),
    ),
    "validate_outcomes": (OUTCOMES_DIR, MODEL, MODEL_METADATA, TEST_PREDICTIONS),
    "update": (OUTCOMES_DIR, MODEL, SERVING_MODEL, MODEL_METADATA),
}
