"""The model card and report figures: built from the inputs only, defensive, deterministic."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from stroke_risk.data.schema import FEATURE_NAMES
from stroke_risk.reports.model_card import (
    baseline_comparison,
    build_model_card,
    fields_used,
    fmt_interval,
    group_sort_key,
    threshold_section,
)
from stroke_risk.reports.plots import (
    calibration_png,
    decision_curve_png,
    importance_png,
    pr_png,
    read_plot_data,
    render_report_figures,
    roc_png,
)
from tests.conftest import REPO_ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def metric(value: float, low: float, high: float) -> dict[str, float]:
    return {"value": value, "ci_low": low, "ci_high": high}


@pytest.fixture
def inputs() -> dict:
    """The four input documents, shaped like the pipeline's, with distinctive numbers."""
    metadata = {
        "model_family": "xgboost",
        "feature_set": "compact",
        "params": {"feature_set": "compact", "max_depth": 3, "learning_rate": 0.0731},
        "decision_threshold": 0.061234,
        "threshold_policy": {"policy": "min_recall", "target_recall": 0.8},
        "threshold_cv_metrics": {"recall": 0.8123, "specificity": 0.7012, "precision": 0.1212},
        "training_rows": 3984,
        "training_prevalence": 0.0497,
        "training_data_sha256": "ab" * 32,
        "library_versions": {"xgboost-cpu": "3.2.0", "python": "3.11.7"},
    }
    metrics = {
        "test": {"n": 997, "positives": 50, "roc_auc": 0.8611, "precision": 0.1361},
        "cv": {
            "roc_auc": 0.8424,
            "roc_auc_std": 0.0236,
            "average_precision": 0.2174,
            "roc_auc_nested": 0.8317,
            "roc_auc_nested_std": 0.0281,
        },
        "instability": {"mape": 0.00613},
    }
    evaluation = {
        "test": {
            "roc_auc": metric(0.8611, 0.8217, 0.8934),
            "average_precision": metric(0.1707, 0.1357, 0.2368),
            "brier": metric(0.0441, 0.0424, 0.0460),
            "log_loss": metric(0.1602, 0.1504, 0.1713),
            "recall": metric(0.8, 0.68, 0.9),
            "specificity": metric(0.7318, 0.7043, 0.7592),
            "precision": metric(0.1361, 0.1145, 0.1563),
            "f1": metric(0.2326, 0.1966, 0.2651),
            "positive_rate": metric(0.2949, 0.2688, 0.3220),
        },
        "baselines": {
            "prevalence": {"roc_auc": 0.5, "average_precision": 0.0502, "brier": 0.0476},
            "age_only": {"roc_auc": 0.7912, "average_precision": 0.1955, "brier": 0.0432},
        },
        "calibration": {
            "bins": [
                {"count": 499, "mean_predicted": 0.0123, "observed_rate": 0.0100},
                {"count": 498, "mean_predicted": 0.0871, "observed_rate": 0.0904},
            ],
            "ece": 0.002468,
            "test": {
                "calibration_intercept": metric(-0.3117, -0.5502, -0.0731),
                "calibration_slope": metric(1.0413, 0.8123, 1.3307),
            },
            "cv": {
                "calibration_intercept": metric(0.0123, -0.1501, 0.1702),
                "calibration_slope": metric(0.7712, 0.6518, 0.8907),
            },
        },
        "decision_curve": {
            "test": {
                "beats_defaults": [[0.01, 0.17], [0.19, 0.2]],
                "confidently_beats_defaults": [[0.02, 0.11]],
                "max_advantage": 0.0262,
                "max_advantage_threshold": 0.05,
            },
            "cv": {
                "beats_defaults": [[0.01, 0.24]],
                "confidently_beats_defaults": [[0.01, 0.18]],
                "max_advantage": 0.0251,
                "max_advantage_threshold": 0.06,
            },
        },
        "subgroups": {
            "age_band": {
                "80+": {"n": 32, "positives": 8, "roc_auc": 0.5156, "recall": 1.0},
                "<18": {"n": 174, "positives": 0, "roc_auc": None, "recall": None},
                "18-40": {"n": 270, "positives": 1, "roc_auc": 0.9554, "recall": 0.0},
                "40-60": {
                    "n": 281,
                    "positives": 12,
                    "too_few_positives": False,
                    "roc_auc": metric(0.7088, 0.5331, 0.8641),
                    "recall": metric(0.25, 0.0, 0.5333),
                },
            }
        },
        "internal_validation": {
            "nested_cv": {"method": "nested CV: 5 outer folds (test method)", "n_trials": 25},
            "instability": {
                "method": "Riley & Collins (test method)",
                "n_bootstrap": 200,
                "mape_max": 0.0512,
                "range95_width_median": 0.0133,
                "range95_width_p90": 0.0721,
            },
        },
        "threshold": {
            "value": 0.061234,
            "policy": "min_recall",
            "target_recall": 0.8,
            "cv_recall": 0.8123,
            "cv_specificity": 0.7012,
        },
    }
    data_summary = {
        "source": "brain.csv",
        "known_dataset": "brain",
        "raw_path": "data/raw/brain.csv",
        "n_rows": 4981,
        "n_positive": 248,
        "prevalence": 0.049789,
        "duplicates_dropped": 3,
        "n_test": 997,
        "n_positive_test": 50,
    }
    return {
        "metadata": metadata,
        "metrics": metrics,
        "evaluation": evaluation,
        "data_summary": data_summary,
    }


def card_of(inputs: dict, **extra) -> str:
    return build_model_card(**inputs, **extra)


def test_card_reports_the_input_numbers(inputs):
    card = card_of(inputs)
    assert card.startswith("# Model card: stroke-risk (xgboost)\n")
    assert (
        "| ROC AUC (higher is better) | 0.861 (0.822-0.893) | 0.500 | 0.791 | 0.842 ± 0.024 |"
        in (card)
    )
    assert "**0.0612**" in card  # threshold
    assert "target recall 0.80" in card
    assert "| Recall (sensitivity) | 0.812 | 0.800 (0.680-0.900) |" in card
    assert "**0.0025**" in card  # ECE
    assert "| Rows after validation | 4,981 |" in card
    assert "| Exact duplicate rows dropped | 3 |" in card
    assert "997 (50 strokes)" in card
    assert "`learning_rate` | `0.0731`" in card
    assert "better than the age-only baseline" in card


def test_card_changes_when_an_input_number_changes(inputs):
    changed = copy.deepcopy(inputs)
    changed["evaluation"]["test"]["roc_auc"] = metric(0.7777, 0.7011, 0.8122)
    card = card_of(changed)
    assert "0.778 (0.701-0.812)" in card
    assert "0.861" not in card.split("## Performance")[1].split("## Decision")[0]
    assert "cannot show that the other fields add discrimination" in card


def test_card_has_the_required_sections(inputs):
    card = card_of(inputs)
    for heading in (
        "## Summary",
        "## Intended use",
        "## Data",
        "## Model",
        "## Performance on the held-out test split",
        "## Decision threshold",
        "## Calibration",
        "## Subgroup performance (test split)",
        "## Per-prediction explanations",
        "## Limitations and ethical considerations",
    ):
        assert heading in card
    assert "atrial fibrillation" in card and "blood-pressure" in card
    assert "5,110 rows" in card  # provenance of brain.csv
    assert "approx_contribs" in card  # the xgboost explanation method


def test_card_lists_fields_the_model_ignores(inputs):
    card = card_of(inputs)
    assert "**Fields used:** `age`, `hypertension`, `heart_disease`, `avg_glucose_level`." in card
    assert "`Residence_type`" in card.split("**Fields accepted but not used:**")[1]
    assert fields_used("full") == list(FEATURE_NAMES)
    assert fields_used("no-such-set") == list(FEATURE_NAMES)


def test_subgroups_are_ordered_naturally_and_small_groups_marked(inputs):
    card = card_of(inputs)
    table = card.split("### By `age_band`")[1].split("##")[0]
    labels = [line.split("|")[1].strip() for line in table.strip().splitlines()[2:]]
    assert labels == ["<18 *", "18-40 *", "40-60", "80+ *"]
    assert "| <18 * | 174 | 0 | n/a |" in table
    assert sorted(["80+", "18-40", "<18", "40-60"], key=group_sort_key) == [
        "<18",
        "18-40",
        "40-60",
        "80+",
    ]


def test_figures_and_importance_are_included_when_given(inputs):
    figures = {name: f"figures/{name}.png" for name in ("roc", "pr", "calibration", "importance")}
    importance = [
        {"feature": "age", "importance": 0.3007},
        {"feature": "bmi", "importance": float("nan")},
        {"feature": "heart_disease", "importance": 0.0019},
    ]
    card = card_of(inputs, figures=figures, importance=importance)
    for path in figures.values():
        assert f"]({path})" in card
    assert "`age` (0.301), `heart_disease` (0.002)" in card
    assert "![ROC curve]" not in card_of(inputs)


def test_card_survives_missing_inputs():
    card = build_model_card(metadata={}, metrics={}, evaluation={}, data_summary={})
    assert "## Performance on the held-out test split" in card
    assert "n/a" in card
    assert "No age-only baseline comparison is available." in card


def test_card_accepts_bare_or_nested_baseline_metrics(inputs):
    nested = copy.deepcopy(inputs)
    nested["evaluation"]["baselines"]["age_only"] = {"metrics": {"roc_auc": {"value": 0.7912}}}
    assert card_of(nested).count("0.791") == card_of(inputs).count("0.791")


def test_card_is_deterministic(inputs):
    assert card_of(inputs) == card_of(copy.deepcopy(inputs))


def test_baseline_comparison_reads_the_interval():
    evaluation = {
        "test": {"roc_auc": metric(0.85, 0.80, 0.88)},
        "baselines": {"age_only": {"roc_auc": 0.70}},
    }
    assert "better than" in baseline_comparison(evaluation)
    evaluation["baselines"]["age_only"]["roc_auc"] = 0.95
    assert "worse than" in baseline_comparison(evaluation)
    evaluation["baselines"]["age_only"]["roc_auc"] = 0.82
    assert "cannot show" in baseline_comparison(evaluation)


def test_interval_formatting():
    assert fmt_interval(metric(0.84682, 0.8047, 0.88215)) == "0.847 (0.805-0.882)"
    assert fmt_interval(0.5) == "0.500"
    assert fmt_interval({"value": None}) == "n/a"


# --- figures -------------------------------------------------------------------------


@pytest.fixture
def plot_data(tmp_path):
    """Synthetic plot-data CSVs with the evaluate stage's column names."""
    rng = np.random.default_rng(0)
    fpr = np.sort(np.r_[0, rng.uniform(size=40), 1])
    directory = tmp_path / "plots"
    directory.mkdir()
    pd.DataFrame({"fpr": fpr, "tpr": np.sqrt(fpr)}).to_csv(directory / "roc.csv", index=False)
    recall = np.linspace(1, 0, 30)
    pd.DataFrame({"recall": recall, "precision": 0.05 + 0.3 * (1 - recall)}).to_csv(
        directory / "pr.csv", index=False
    )
    pd.DataFrame(
        {
            "mean_predicted": [0.01, 0.04, 0.12],
            "observed_rate": [0.0, 0.05, 0.1],
            "count": [300, 300, 297],
        }
    ).to_csv(directory / "calibration.csv", index=False)
    pd.DataFrame(
        {"feature": list(FEATURE_NAMES), "importance": np.linspace(0.3, -0.01, len(FEATURE_NAMES))}
    ).to_csv(directory / "importance.csv", index=False)
    grid = np.linspace(0.002, 0.25, 20)
    for name, bend in (("calibration_smooth", 0.9), ("calibration_smooth_cv", 1.05)):
        pd.DataFrame(
            {
                "predicted": grid,
                "observed": grid * bend,
                "ci_low": grid * 0.7,
                "ci_high": grid * 1.3,
            }
        ).to_csv(directory / f"{name}.csv", index=False)
    thresholds = np.round(np.arange(0.01, 0.31, 0.01), 2)
    model = np.maximum(0.045 - 0.2 * thresholds, -0.002)
    pd.DataFrame(
        {
            "threshold": thresholds,
            "model": model,
            "treat_all": 0.05 - 0.95 * thresholds / (1 - thresholds),
            "treat_none": 0.0,
            "model_ci_low": model - 0.01,
            "model_ci_high": model + 0.01,
            "model_cv": model * 1.1,
        }
    ).to_csv(directory / "decision_curve.csv", index=False)
    original = np.sort(rng.uniform(0, 0.4, 200))
    pd.DataFrame(
        {
            "original": original,
            "bootstrap_low": original * 0.8,
            "bootstrap_median": original,
            "bootstrap_high": original * 1.2,
            "mean_absolute_error": original * 0.05,
        }
    ).to_csv(directory / "instability.csv", index=False)
    return directory


def test_each_figure_is_a_deterministic_png(plot_data):
    renders = {
        "roc": lambda: roc_png(read_plot_data(plot_data / "roc.csv", "roc"), roc_auc=0.8),
        "pr": lambda: pr_png(read_plot_data(plot_data / "pr.csv", "pr"), prevalence=0.05),
        "calibration": lambda: calibration_png(
            read_plot_data(plot_data / "calibration.csv", "calibration"),
            ece=0.01,
            smooth=read_plot_data(plot_data / "calibration_smooth.csv", "calibration_smooth"),
            smooth_cv=read_plot_data(
                plot_data / "calibration_smooth_cv.csv", "calibration_smooth_cv"
            ),
        ),
        "decision_curve": lambda: decision_curve_png(
            read_plot_data(plot_data / "decision_curve.csv", "decision_curve")
        ),
        "importance": lambda: importance_png(
            read_plot_data(plot_data / "importance.csv", "importance")
        ),
    }
    for name, render in renders.items():
        first, second = render(), render()
        assert first.startswith(PNG_SIGNATURE), name
        assert first == second, f"{name} PNG differs between renders"
        assert b"Software" not in first and b"atplotlib" not in first


def test_figure_depends_on_its_data(plot_data):
    roc = read_plot_data(plot_data / "roc.csv", "roc")
    assert roc_png(roc) != roc_png(roc.assign(tpr=roc["fpr"]))


def test_plot_data_with_wrong_columns_is_rejected(tmp_path):
    path = tmp_path / "roc.csv"
    pd.DataFrame({"false_positive_rate": [0, 1], "tpr": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="fpr"):
        read_plot_data(path, "roc")


def test_render_report_figures_writes_five_pngs(plot_data, tmp_path):
    written = render_report_figures(plot_data, tmp_path / "figures", roc_auc=0.8)
    assert sorted(written) == ["calibration", "decision_curve", "importance", "pr", "roc"]
    for path in written.values():
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert not list((tmp_path / "figures").glob(".*.tmp"))  # atomic writes leave no temp
    (plot_data / "pr.csv").unlink()
    with pytest.raises(FileNotFoundError):
        render_report_figures(plot_data, tmp_path / "other")


def report_arguments(paths: dict, plots, out) -> list[str]:
    return [
        "--metadata",
        str(paths["metadata"]),
        "--metrics",
        str(paths["metrics"]),
        "--evaluation",
        str(paths["evaluation"]),
        "--data-summary",
        str(paths["data_summary"]),
        "--plots",
        str(plots),
        "--instability",
        str(plots / "instability.csv"),
        "--figures",
        str(out / "figures"),
        "--card",
        str(out / "model_card.md"),
        "--tripod",
        str(out / "tripod_ai.md"),
    ]


def run_report_in_process(monkeypatch, arguments: list[str]) -> None:
    from stages.report import main
    from stroke_risk.cli import run_stage

    monkeypatch.setattr(sys, "argv", ["stages/report.py", *arguments])
    run_stage("report", main)


@pytest.mark.integration
def test_report_stage_output_is_byte_identical_on_rerun(inputs, plot_data, tmp_path, monkeypatch):
    paths = {}
    for name in ("metadata", "metrics", "evaluation", "data_summary"):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(inputs[name]))
    out = tmp_path / "out"
    arguments = report_arguments(paths, plot_data, out)
    outputs = []
    # Once in this process and once in a fresh one: no state may leak into the bytes.
    run_report_in_process(monkeypatch, arguments)
    outputs.append({p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    command = [sys.executable, "-m", "stages.report", *arguments]
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
    outputs.append({p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert sorted(outputs[0]) == [
        "calibration.png",
        "decision_curve.png",
        "importance.png",
        "instability.png",
        "model_card.md",
        "pr.png",
        "roc.png",
        "tripod_ai.md",
    ]
    assert outputs[0] == outputs[1]
    card = outputs[0]["model_card.md"].decode()
    assert "![Calibration](figures/calibration.png)" in card
    assert "![Decision curve](figures/decision_curve.png)" in card


def test_report_stage_fails_cleanly_without_evaluation(
    inputs, plot_data, tmp_path, monkeypatch, capsys
):
    paths = {}
    for name in ("metadata", "metrics", "data_summary"):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(inputs[name]))
    paths["evaluation"] = tmp_path / "missing.json"
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        run_report_in_process(monkeypatch, report_arguments(paths, plot_data, out))
    assert exit_info.value.code == 1
    assert "stage report failed" in capsys.readouterr().err
    assert not out.exists()


def test_card_reports_calibration_and_decision_curve(inputs):
    card = card_of(inputs)
    calibration = card.split("## Calibration")[1].split("## Decision curve")[0]
    assert "| test split | -0.312 (-0.550 to -0.073) | 1.041 (0.812-1.331) |" in calibration
    assert "risk over-predicted overall" in calibration
    assert "predictions too extreme" in calibration  # the CV slope interval lies below 1
    decision = card.split("## Decision curve (net benefit)")[1].split("## Subgroup")[0]
    assert "threshold probabilities 1%-17%, 19%-20%" in decision
    assert "(95% interval of the gain above 0 at 2%-11%)" in decision
    assert "26.2 per 1,000) at 5%" in decision
    assert "slope 1.041 (0.812-1.331)" in card.split("## Intended use")[0]


def test_subgroup_intervals_shown_and_few_strokes_withheld(inputs):
    table = card_of(inputs).split("### By `age_band`")[1].split("##")[0]
    assert "| 40-60 | 281 | 12 | 0.709 (0.533-0.864) | 0.250 (0.000-0.533) |" in table
    assert "| 18-40 * | 270 | 1 | too few strokes | too few strokes |" in table
    assert "0.955" not in table  # the one-stroke AUC is not shown as if it meant something


def test_tripod_report_covers_every_item_and_the_sample_size(inputs):
    from stroke_risk.reports.tripod import build_tripod_report, checklist_rows

    rows = checklist_rows(**inputs)
    items = [row[0] for row in rows]
    expected = (
        ["1", "2", "3a", "3b", "3c", "4", "5a", "5b", "6a", "6b", "6c", "7", "8a", "8b", "8c"]
        + ["9a", "9b", "9c", "10", "11", "12a", "12b", "12c", "12d", "12e", "12f", "12g"]
        + ["13", "14", "15", "16", "17", "18a", "18b", "18c", "18d", "18e", "18f", "19"]
        + ["20a", "20b", "20c", "21", "22", "23a", "23b", "24", "25", "26", "27a", "27b", "27c"]
    )
    assert items == expected
    report = build_tripod_report(**inputs)
    sample_size = next(row for row in rows if row[0] == "10")[3]
    assert "candidate predictor parameters" in sample_size and "3,984 rows" in sample_size
    assert "anticipated C 0.842" in sample_size
    outcome = next(row for row in rows if row[0] == "8a")
    assert outcome[2] == "cannot be answered" and "cross-sectional" in outcome[3]
    assert "1.041 (0.812-1.331)" in report
    assert report == build_tripod_report(**copy.deepcopy(inputs))


def test_no_skill_warning_names_the_evidence_and_stays_silent_for_a_skilled_model():
    from stroke_risk.reports.model_card import no_skill_warning

    chance = {"test": {"roc_auc": {"value": 0.52, "ci_low": 0.44, "ci_high": 0.60}}}
    warning = no_skill_warning({"cv": {"roc_auc": 0.54, "roc_auc_std": 0.036}}, chance)
    assert warning is not None
    assert "0.520 (0.440-0.600) includes 0.5" in warning
    assert "0.540 ± 0.036 reaches 0.5" in warning
    skilled = {"test": {"roc_auc": {"value": 0.85, "ci_low": 0.80, "ci_high": 0.89}}}
    assert no_skill_warning({"cv": {"roc_auc": 0.84, "roc_auc_std": 0.02}}, skilled) is None
    # Either piece of evidence alone is enough.
    assert no_skill_warning({"cv": {"roc_auc": 0.84, "roc_auc_std": 0.02}}, chance) is not None


def test_card_reports_nested_cv_and_prediction_instability(inputs):
    card = card_of(inputs, figures={"instability": "figures/instability.png"})
    section = card.split("## Internal validation")[1].split("\n## ")[0]
    assert "0.832 ± 0.028" in section and "0.842 ± 0.024" in section
    assert "0.0107" in section  # the optimism: 0.8424 - 0.8317
    assert "nested CV: 5 outer folds (test method)" in section
    assert "MAPE) 0.0061" in section and "200 bootstrap refits" in section
    assert "0.0133" in section and "0.0721" in section and "0.0512" in section
    assert "![Prediction instability](figures/instability.png)" in section
    del inputs["metrics"]["cv"]["roc_auc_nested"], inputs["metrics"]["instability"]
    bare = card_of(inputs)
    assert "No nested cross-validation is available." in bare
    assert "No prediction-instability analysis is available." in bare


def test_card_names_the_calibration_interval_method(inputs):
    inputs["evaluation"]["calibration"]["intercept_slope_ci_method"] = "profile likelihood, 95%"
    assert "Intervals of the intercept and slope: profile likelihood, 95%." in card_of(inputs)


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        (
            {"policy": "min_recall", "target_recall": 0.8},
            "Policy `min_recall` (target recall 0.80): ",
        ),
        ({"policy": "net_benefit", "harm_benefit_ratio": 0.05}, "(harm/benefit ratio 0.05): "),
        ({"policy": "max_f1", "target_recall": 0.8}, "Policy `max_f1`: the threshold that max"),
    ],
)
def test_threshold_section_describes_the_policy_from_its_record(settings, shown):
    """The policy's text and setting come from the threshold table, from evaluation or metadata."""
    for metadata, evaluation in (
        ({"threshold_policy": settings}, {"threshold": {"value": 0.1}}),
        ({}, {"threshold": {"value": 0.1, **settings}}),
    ):
        assert shown in " ".join(threshold_section(metadata, evaluation))
