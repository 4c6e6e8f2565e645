"""The prediction instability plot (Riley & Collins 2023), drawn by the report stage.

It draws the instability stage's per-patient table
(stroke_risk.evaluation.instability.per_patient_instability).

Kept apart from stroke_risk.evaluation.instability so the costly bootstrap stage does not rerun when
only the drawing code changes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

# plots.py owns the deterministic rendering (style, font, dpi, no metadata): reuse it so the
# instability figure is byte-identical on rerun like the others.
from stroke_risk.reports.plots import _render

INSTABILITY_COLUMNS = ("original", "bootstrap_low", "bootstrap_median", "bootstrap_high")


def read_instability_table(path: str) -> pd.DataFrame:
    """Read the instability stage's per-patient table; a missing column names the file."""
    table = pd.read_csv(path)
    missing = [column for column in INSTABILITY_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} for the instability plot")
    return table


def instability_png(table: pd.DataFrame, *, mape: float | None = None) -> bytes:
    """The prediction instability plot: each patient's 95% range of bootstrap-model
    predictions (a vertical segment) and the median, against the original prediction."""
    original = table["original"].to_numpy()
    order = np.argsort(original, kind="stable")
    x = original[order]
    low, high = table["bootstrap_low"].to_numpy()[order], table["bootstrap_high"].to_numpy()[order]
    median = table["bootstrap_median"].to_numpy()[order]

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        limit = float(max(high.max(), x.max())) * 1.05
        segments = np.stack([np.c_[x, low], np.c_[x, high]], axis=1)
        axes.add_collection(
            LineCollection(
                list(segments), colors="tab:blue", linewidths=0.6, alpha=0.25, label="95% range"
            )
        )
        axes.scatter(x, median, s=2, color="tab:blue", label="bootstrap median")
        axes.plot([0, limit], [0, limit], color="grey", linestyle="--", label="no instability")
        axes.set_xlim(0, limit)
        axes.set_ylim(0, limit)
        axes.set_xlabel("Prediction of the developed model")
        axes.set_ylabel("Predictions of bootstrap models")
        title = "Prediction instability (training split)"
        if mape is not None:
            title += f", MAPE {mape:.4f}"
        axes.set_title(title)
        axes.legend(loc="upper left")

    return _render(draw)
