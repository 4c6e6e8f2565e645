"""Stage report: the model card and the report figures, from the pipeline's own outputs.

Reads params: none (every number comes from the input files).
Reads: models/model_metadata.json, reports/metrics.json, reports/evaluation.json,
reports/data_summary.json, reports/plots/*.csv, reports/instability.csv.
Writes: reports/model_card.md, reports/tripod_ai.md and
reports/figures/{roc,pr,calibration,decision_curve,importance,instability}.png
(byte-identical on rerun).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from stroke_risk import paths
from stroke_risk.cli import run_stage
from stroke_risk.io import read_json, write_text
from stroke_risk.reports.instability_plot import instability_png, read_instability_table
from stroke_risk.reports.model_card import build_model_card, lookup, metric_value
from stroke_risk.reports.plots import render_report_figures, write_png
from stroke_risk.reports.tripod import build_tripod_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metadata", default=paths.MODEL_METADATA)
    parser.add_argument("--metrics", default=paths.METRICS)
    parser.add_argument("--evaluation", default=paths.EVALUATION)
    parser.add_argument("--data-summary", default=paths.DATA_SUMMARY)
    parser.add_argument("--plots", default=paths.PLOTS_DIR)
    parser.add_argument("--instability", default=paths.INSTABILITY_TABLE)
    parser.add_argument("--figures", default=paths.FIGURES_DIR)
    parser.add_argument("--card", default=paths.MODEL_CARD)
    parser.add_argument("--tripod", default=paths.TRIPOD_REPORT)
    args = parser.parse_args()
    metadata, metrics = read_json(args.metadata), read_json(args.metrics)
    evaluation, data_summary = read_json(args.evaluation), read_json(args.data_summary)

    written = render_report_figures(
        args.plots,
        args.figures,
        roc_auc=metric_value(lookup(evaluation, "test", "roc_auc")),
        prevalence=metric_value(lookup(data_summary, "prevalence")),
        ece=metric_value(lookup(evaluation, "calibration", "ece")),
    )
    written["instability"] = Path(args.figures) / "instability.png"
    write_png(
        written["instability"],
        instability_png(
            read_instability_table(args.instability),
            mape=metric_value(lookup(metrics, "instability", "mape")),
        ),
    )
    card_dir = Path(args.card).parent
    # Links relative to the card, with forward slashes, so they render wherever it is viewed.
    figures = {
        name: Path(os.path.relpath(path, card_dir)).as_posix() for name, path in written.items()
    }
    importance = pd.read_csv(Path(args.plots) / "importance.csv").to_dict(orient="records")
    card = build_model_card(
        metadata=metadata,
        metrics=metrics,
        evaluation=evaluation,
        data_summary=data_summary,
        importance=importance,
        figures=figures,
    )
    tripod = build_tripod_report(
        metadata=metadata, metrics=metrics, evaluation=evaluation, data_summary=data_summary
    )
    write_text(args.card, card)
    write_text(args.tripod, tripod)
    print(f"wrote {args.card}, {args.tripod} and {len(written)} figures in {args.figures}")


if __name__ == "__main__":
    run_stage("report", main)
