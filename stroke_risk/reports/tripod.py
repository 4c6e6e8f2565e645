"""The TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378) answered for this project.

reports/tripod_ai.md has one row per checklist item: where the project answers it, or an
honest statement that it cannot. Item wording is paraphrased, not quoted; numbers come from
the pipeline's outputs, like the model card's. The sample-size row applies the Riley et al.
criteria (stroke_risk.evaluation.sample_size) to the candidate predictor parameters the tuner could
choose from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from stroke_risk import paths
from stroke_risk.data.features import FeatureConfig
from stroke_risk.data.prepared import feature_config_from_params
from stroke_risk.evaluation.decision_curve import describe_ranges
from stroke_risk.evaluation.sample_size import SampleSize, expected_shrinkage, riley_sample_size
from stroke_risk.models.pipelines import FEATURE_SETS, category_domain
from stroke_risk.reports.model_card import (
    fmt,
    fmt_interval,
    fmt_percent,
    lookup,
    metric_value,
    table,
)

ANSWERED, PARTLY, CANNOT = "answered", "partly", "cannot be answered"
CARD = f"`{paths.MODEL_CARD}`"
# Riley et al.'s fallback when no prior model is known: Nagelkerke R2 of 0.15.
CONSERVATIVE_NAGELKERKE_R2 = 0.15


def candidate_parameters(feature_set: str, feature_config: FeatureConfig) -> int:
    """Regression parameters (excluding the intercept) of a feature set: one per numeric or
    binary column, categories - 1 per categorical column."""
    columns = FEATURE_SETS[feature_set]
    categorical = sum(len(category_domain(c, feature_config)) - 1 for c in columns.categorical)
    return len(columns.numeric) + len(columns.binary) + categorical


def feature_config_of(metadata: Mapping[str, Any]) -> FeatureConfig:
    """The model's feature config from its metadata; keys it lacks take FeatureConfig's
    defaults."""
    config = lookup(metadata, "feature_config", default={}) or {}
    return feature_config_from_params({**asdict(FeatureConfig()), **config})


def sample_size_assessment(
    metadata: Mapping[str, Any], metrics: Mapping[str, Any], data_summary: Mapping[str, Any]
) -> dict[str, Any]:
    """Riley et al. minimum n for the largest candidate feature set, under the anticipated
    C statistic (the cross-validated one) and under the conservative R2 fallback, compared
    with the training split actually used."""
    config = feature_config_of(metadata)
    parameters = max(candidate_parameters(name, config) for name in FEATURE_SETS)
    prevalence = metric_value(lookup(metadata, "training_prevalence")) or metric_value(
        lookup(data_summary, "prevalence")
    )
    n_train = lookup(metadata, "training_rows", default=lookup(data_summary, "n_train"))
    c_statistic = metric_value(lookup(metrics, "cv", "roc_auc"))
    if not prevalence or not n_train:
        return {}
    from stroke_risk.evaluation.sample_size import max_cox_snell_r2

    scenarios: dict[str, SampleSize] = {
        "conservative": riley_sample_size(
            parameters=parameters,
            prevalence=prevalence,
            cox_snell_r2=CONSERVATIVE_NAGELKERKE_R2 * max_cox_snell_r2(prevalence),
        )
    }
    if c_statistic is not None and 0.5 < c_statistic < 1:
        scenarios["anticipated_c"] = riley_sample_size(
            parameters=parameters, prevalence=prevalence, c_statistic=c_statistic
        )
    return {
        "parameters": parameters,
        "n_train": int(n_train),
        "events_train": round(n_train * prevalence),
        "c_statistic": c_statistic,
        "scenarios": {
            name: {
                **result.as_dict(),
                "shrinkage_at_n_train": expected_shrinkage(
                    parameters=parameters, n=int(n_train), cox_snell_r2=result.cox_snell_r2
                ),
            }
            for name, result in scenarios.items()
        },
    }


def sample_size_text(assessment: Mapping[str, Any]) -> str:
    if not assessment:
        return "Not computed (inputs missing)."
    parts = [
        f"Riley et al. criteria for {assessment['parameters']} candidate predictor parameters "
        f"(the largest feature set the tuner could pick; categories counted as levels - 1), "
        f"prevalence {fmt_percent(next(iter(assessment['scenarios'].values()))['prevalence'], 2)}."
    ]
    labels = {
        "anticipated_c": f"anticipated C {fmt(assessment['c_statistic'])} (the CV estimate)",
        "conservative": f"no prior model (Nagelkerke R2 {CONSERVATIVE_NAGELKERKE_R2})",
    }
    for name, result in assessment["scenarios"].items():
        verdict = "met" if assessment["n_train"] >= result["required_n"] else "NOT met"
        parts.append(
            f"With {labels[name]}: R2_CS {fmt(result['cox_snell_r2'], 4)}, minimum n "
            f"{fmt(result['required_n'])} ({fmt(round(result['required_events']))} events, "
            f"{fmt(result['events_per_parameter'], 1)} per parameter; criteria "
            f"{result['n_shrinkage']}/{result['n_optimism']}/{result['n_overall_risk']}); the "
            f"training split has {fmt(assessment['n_train'])} rows and "
            f"{fmt(assessment['events_train'])} events: {verdict} (expected shrinkage "
            f"{fmt(result['shrinkage_at_n_train'])})."
        )
    parts.append(
        "The criteria are for regression; tree ensembles and boosted models have more "
        "effective parameters, so for them the numbers are a lower bound. The test split "
        "(about 50 events) is below the ~100 events usually asked of a validation sample."
    )
    return " ".join(parts)


def missing_data_text(evaluation: Mapping[str, Any], data_summary: Mapping[str, Any]) -> str:
    missing = lookup(evaluation, "missing_data", default={}) or {}
    bmi = lookup(missing, "bmi_missing", default=lookup(data_summary, "bmi_missing"))
    unknown = lookup(missing, "smoking_unknown")
    rows = lookup(missing, "rows")
    text = (
        f"bmi: {fmt(bmi)} of {fmt(rows)} rows missing; imputed by the training median inside "
        "the pipeline (fitted in-fold during CV). Missingness is not used as a feature: in the "
        "5,110-row file patients with missing bmi had strokes four times as often, a "
        "recording artefact that would not transfer. brain.csv's bmi was already imputed "
        "upstream by an unknown method, so its missing values cannot be recognised. "
    )
    if unknown is not None:
        text += (
            f"smoking_status 'Unknown': {fmt(unknown)} rows ({fmt_percent(unknown / rows)}), kept "
            "as its own category because the value is missing in the source, not a choice; "
            "its meaning may differ between settings."
        )
    return text


def checklist_rows(
    *,
    metadata: Mapping[str, Any],
    metrics: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    data_summary: Mapping[str, Any],
) -> list[tuple[str, str, str, str]]:
    """(item, topic, status, where answered / why not) for every TRIPOD+AI item."""
    family = lookup(metadata, "model_family", default="n/a")
    source = lookup(data_summary, "source", default="unknown")
    n_rows, n_pos = lookup(data_summary, "n_rows"), lookup(data_summary, "n_positive")
    n_train, n_test = lookup(data_summary, "n_train"), lookup(data_summary, "n_test")
    test = lookup(evaluation, "test", default={}) or {}
    calibration = lookup(evaluation, "calibration", "test", default={}) or {}
    useful = lookup(evaluation, "decision_curve", "test", "beats_defaults", default=[]) or []
    policy = lookup(metadata, "threshold_policy", "policy", default="n/a")
    assessment = sample_size_assessment(metadata, metrics, data_summary)
    return [
        (
            "1",
            "Title",
            ANSWERED,
            (
                f"{CARD} title: development of a `{family}` model for a recorded stroke in adults "
                "and children of an unnamed population."
            ),
        ),
        (
            "2",
            "Abstract",
            PARTLY,
            f"{CARD} Summary section; no structured TRIPOD+AI abstract (this is not a paper).",
        ),
        (
            "3a",
            "Healthcare context",
            PARTLY,
            (
                f"{CARD} Intended use: prioritising preventive follow-up. Existing stroke scores "
                "(e.g. Framingham, QStroke, CHA2DS2-VASc) are not compared: they need fields this "
                "data lacks."
            ),
        ),
        (
            "3b",
            "Target population, intended use and users",
            ANSWERED,
            f"{CARD} Intended use (purpose, users, not-for list).",
        ),
        (
            "3c",
            "Known health inequalities",
            CANNOT,
            (
                "No ethnicity, deprivation or access-to-care fields; only gender, age band and "
                "residence type are available and are reported as subgroups."
            ),
        ),
        (
            "4",
            "Objectives",
            ANSWERED,
            (
                "Development with internal validation (repeated CV on the training split, one "
                "held-out test split); README and model card."
            ),
        ),
        (
            "5a",
            "Data sources and representativeness",
            CANNOT,
            (
                f"Data set `{source}`: the public Kaggle stroke data, published without a stated "
                f"source ('confidential source'); representativeness cannot be assessed. {CARD} "
                "Data."
            ),
        ),
        ("5b", "Dates of data collection", CANNOT, "Not recorded in the source."),
        ("6a", "Setting and centres", CANNOT, "Not recorded in the source."),
        (
            "6b",
            "Eligibility criteria",
            PARTLY,
            (
                "Inclusion is whatever the source contains; the pipeline's own exclusions (schema "
                f"validation, duplicate rows) are counted in `{paths.DATA_SUMMARY}`."
            ),
        ),
        ("6c", "Treatments", CANNOT, "No treatment or medication fields."),
        (
            "7",
            "Data preparation and quality checks",
            ANSWERED,
            (
                "`stroke_risk/data/schema.py` (one schema for every field's type, range,"
                " categories) and `stages/prepare.py`; the same checks apply to every row and"
                " subgroup."
            ),
        ),
        (
            "8a",
            "Outcome definition and time horizon",
            CANNOT,
            (
                "`stroke` is a recorded yes/no with no date: the data is cross-sectional, so there "
                "is no time horizon and the model estimates association with a recorded stroke, not"
                " future risk."
            ),
        ),
        (
            "8b",
            "Subjective outcome assessment",
            CANNOT,
            "How strokes were ascertained is not documented.",
        ),
        ("8c", "Blinding of outcome assessment", CANNOT, "Not documented."),
        (
            "9a",
            "Choice of predictors",
            ANSWERED,
            (
                "All ten available fields are candidates; engineered features in "
                "`stroke_risk/data/features.py`; the feature set is a tuned hyperparameter chosen"
                " by CV."
            ),
        ),
        (
            "9b",
            "Predictor definitions and measurement",
            PARTLY,
            (
                "Types, units and ranges in `stroke_risk/data/schema.py`; when and how they were "
                "measured is not documented (bmi in particular was often missing around the event)."
            ),
        ),
        ("9c", "Subjective predictor assessment", CANNOT, "Not documented."),
        ("10", "Sample size", ANSWERED, sample_size_text(assessment)),
        ("11", "Missing data", ANSWERED, missing_data_text(evaluation, data_summary)),
        (
            "12a",
            "Use of the data",
            ANSWERED,
            (
                f"{fmt(n_rows)} rows ({fmt(n_pos)} strokes) split once, stratified: {fmt(n_train)} "
                f"for tuning, threshold choice and fitting, {fmt(n_test)} held out and read only "
                "by the evaluate stage (a test checks this)."
            ),
        ),
        (
            "12b",
            "Predictor handling",
            ANSWERED,
            (
                "Inside one scikit-learn pipeline: median imputation and scaling of numerics, "
                "one-hot categories over the schema's domain, engineered bands and log glucose "
                "(`stroke_risk/models/pipelines.py`)."
            ),
        ),
        (
            "12c",
            "Model type, building steps, tuning, internal validation",
            ANSWERED,
            (
                "Optuna search over each family's space scored by repeated stratified CV (every "
                "preprocessing step fitted in-fold); selection optimism estimated by nested CV "
                "around the whole search, prediction instability by bootstrap refits (Riley & "
                "Collins 2023); families compared by `python -m "
                "stroke_risk.commands.compare` with the corrected resampled t-test"
                " (Nadeau & Bengio)."
            ),
        ),
        (
            "12d",
            "Heterogeneity across clusters",
            CANNOT,
            "No centre or cluster identifier in the data.",
        ),
        (
            "12e",
            "Performance measures",
            ANSWERED,
            (
                "ROC AUC, average precision, Brier, log loss, calibration intercept and slope, "
                "smoothed calibration curve, ECE, net benefit (decision curve), threshold metrics; "
                "each with a 95% patient-bootstrap CI (calibration intercept and slope: "
                f"profile likelihood). {CARD}."
            ),
        ),
        (
            "12f",
            "Model updating / recalibration",
            ANSWERED,
            (
                "No recalibration was applied: out-of-fold calibration intercept and slope are "
                "reported and their intervals decide whether it is needed."
            ),
        ),
        (
            "12g",
            "How predictions were computed for evaluation",
            ANSWERED,
            (
                f"`{paths.MODEL}` (one pipeline from raw fields to probability) scored the "
                "test split; the service uses an equivalent compiled scorer checked against it at "
                "start-up."
            ),
        ),
        (
            "13",
            "Class imbalance",
            ANSWERED,
            (
                "No resampling or class weights, so predicted probabilities stay calibrated to the "
                "observed prevalence; the imbalance is handled by the decision threshold."
            ),
        ),
        (
            "14",
            "Fairness",
            PARTLY,
            (
                f"Subgroup metrics with CIs by gender, age band and hypertension ({CARD}); groups "
                "with fewer than 10 strokes are marked and their stroke-based metrics withheld. No "
                "fairness intervention."
            ),
        ),
        (
            "15",
            "Model output and thresholds",
            ANSWERED,
            (
                f"A probability; a patient is flagged at the threshold chosen by policy `{policy}` "
                f"on out-of-fold predictions ({CARD} Decision threshold)."
            ),
        ),
        (
            "16",
            "Differences between development and evaluation data",
            ANSWERED,
            (
                "None by design: the test split is a random stratified part of the same file. This "
                "is internal, not external, validation."
            ),
        ),
        (
            "17",
            "Ethical approval",
            CANNOT,
            (
                "Public, de-identified data used without a study protocol; no ethics review applies"
                " to this engineering project, and consent status of the source is unknown."
            ),
        ),
        ("18a", "Funding", CANNOT, "Not applicable / not stated."),
        ("18b", "Conflicts of interest", CANNOT, "Not stated."),
        ("18c", "Protocol", CANNOT, "No protocol was prepared."),
        ("18d", "Registration", CANNOT, "Not registered."),
        (
            "18e",
            "Data sharing",
            PARTLY,
            "The public data files are in `data/raw/`; their licence restricts use to education.",
        ),
        (
            "18f",
            "Code sharing",
            ANSWERED,
            "The whole pipeline is this repository; `dvc repro` rebuilds every number.",
        ),
        ("19", "Patient and public involvement", CANNOT, "None."),
        (
            "20a",
            "Flow of participants",
            ANSWERED,
            f"`{paths.DATA_SUMMARY}` (rows read, dropped, split, strokes per split).",
        ),
        (
            "20b",
            "Characteristics of the data",
            PARTLY,
            (
                f"Counts, prevalence and missing values in {CARD} Data; no table of predictor "
                "distributions by outcome."
            ),
        ),
        (
            "20c",
            "Development vs evaluation predictor distributions",
            PARTLY,
            (
                f"Same population by construction; `{paths.REFERENCE_PROFILE}` holds the "
                "training distributions the monitor compares live traffic with."
            ),
        ),
        (
            "21",
            "Participants and events per analysis",
            ANSWERED,
            (
                f"Tuning and fitting: {fmt(n_train)} rows; test: {fmt(n_test)} rows, "
                f"{fmt(lookup(data_summary, 'n_positive_test'))} strokes ({CARD})."
            ),
        ),
        (
            "22",
            "Full model specification",
            ANSWERED,
            (
                f"`{paths.MODEL}` with `{paths.MODEL_METADATA}` (hyperparameters, feature "
                "definitions, library versions); served by the REST API. Free to reuse under the "
                "repository licence."
            ),
        ),
        (
            "23a",
            "Performance with CIs, including subgroups",
            ANSWERED,
            (
                f"Test ROC AUC {fmt_interval(test.get('roc_auc'))}, calibration slope "
                f"{fmt_interval(calibration.get('calibration_slope'))}, intercept "
                f"{fmt_interval(calibration.get('calibration_intercept'))}; net benefit above both "
                f"defaults at thresholds {describe_ranges(useful)}; subgroups with CIs ({CARD})."
            ),
        ),
        ("23b", "Heterogeneity across clusters", CANNOT, "No clusters in the data."),
        ("24", "Model updating results", ANSWERED, "No updating was done (see 12f)."),
        (
            "25",
            "Interpretation",
            PARTLY,
            (
                f"{CARD} Summary and Limitations: most of the discrimination is age; compare with "
                "the age-only baseline."
            ),
        ),
        (
            "26",
            "Limitations",
            ANSWERED,
            (
                f"{CARD} Limitations and Data caveats: unknown provenance, cross-sectional label, "
                "missing major risk factors, few test events, no external validation."
            ),
        ),
        (
            "27a",
            "Handling poor or missing inputs in use",
            ANSWERED,
            (
                "The API validates every field against the schema and names each bad field; missing"
                " bmi is imputed as in training."
            ),
        ),
        (
            "27b",
            "User interaction and expertise",
            ANSWERED,
            (
                f"{CARD} Intended use: clinicians review flagged patients; the score is decision "
                "support."
            ),
        ),
        (
            "27c",
            "Next steps",
            ANSWERED,
            (
                "External validation on data with known provenance, dates and a prospective "
                "outcome; recalibration in the target setting before use."
            ),
        ),
    ]


def build_tripod_report(
    *,
    metadata: Mapping[str, Any],
    metrics: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    data_summary: Mapping[str, Any],
) -> str:
    """reports/tripod_ai.md as Markdown text (deterministic)."""
    rows = checklist_rows(
        metadata=metadata, metrics=metrics, evaluation=evaluation, data_summary=data_summary
    )
    counts = {
        status: sum(row[2] == status for row in rows) for status in (ANSWERED, PARTLY, CANNOT)
    }
    lines = [
        "# TRIPOD+AI checklist",
        "",
        "<!-- Generated by the `report` stage (stroke_risk/reports/tripod.py)."
        " Do not edit by hand. -->",
        "",
        "Reporting checklist for clinical prediction models (Collins et al., BMJ "
        "2024;385:e078378), item by item: where this project answers it, or why it cannot. "
        "Item topics are paraphrased; see the paper for the exact wording.",
        "",
        f"{len(rows)} items: {counts[ANSWERED]} answered, {counts[PARTLY]} partly, "
        f"{counts[CANNOT]} cannot be answered from this data or project.",
        "",
        *table(["item", "topic", "status", "where / why not"], [list(row) for row in rows]),
        "",
    ]
    return "\n".join(lines)
