"""Report figures (ROC, precision-recall, calibration, decision curve, feature importance).

The evaluate stage writes the plot data (reports/plots/*.csv); these functions only draw
it. Rendering is deterministic, so rerunning the report stage gives byte-identical PNGs and
DVC sees no change: matplotlib's default style (a user's matplotlibrc cannot leak in), the
bundled DejaVu font, a fixed size and dpi, and no "Software" metadata in the file.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import matplotlib.style
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stroke_risk.io import atomic_path

FIGURE_SIZE = (6.0, 4.5)  # inches
FIGURE_DPI = 100
PLOT_COLUMNS: dict[str, tuple[str, ...]] = {
    "roc": ("fpr", "tpr"),
    "pr": ("recall", "precision"),
    "calibration": ("mean_predicted", "observed_rate", "count"),
    "calibration_smooth": ("predicted", "observed", "ci_low", "ci_high"),
    "calibration_smooth_cv": ("predicted", "observed", "ci_low", "ci_high"),
    "decision_curve": (
        "threshold",
        "model",
        "treat_all",
        "treat_none",
        "model_ci_low",
        "model_ci_high",
        "model_cv",
    ),
    "importance": ("feature", "importance"),
}


def read_plot_data(path: str | Path, kind: str) -> pd.DataFrame:
    """Read one plot-data CSV and check it has the columns the figure needs."""
    frame = pd.read_csv(path)
    missing = [c for c in PLOT_COLUMNS[kind] if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} for the {kind} plot")
    return frame


def _render(draw: Callable[[Figure], None], *, size: tuple[float, float] = FIGURE_SIZE) -> bytes:
    """Draw on a fresh Agg figure (no pyplot global state) and return the PNG bytes."""
    with matplotlib.style.context("default"):
        figure = Figure(figsize=size, dpi=FIGURE_DPI, layout="constrained")
        FigureCanvasAgg(figure)
        draw(figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    return buffer.getvalue()


def roc_png(roc: pd.DataFrame, *, roc_auc: float | None = None) -> bytes:
    """ROC curve of the test split with the chance diagonal."""

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        label = "model" if roc_auc is None else f"model (AUC {roc_auc:.3f})"
        axes.plot(roc["fpr"], roc["tpr"], drawstyle="steps-post", label=label)
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
        axes.set(xlabel="False positive rate (1 - specificity)", ylabel="True positive rate")
        axes.set(xlim=(0, 1), ylim=(0, 1.01), title="ROC curve (test split)")
        axes.legend(loc="lower right")

    return _render(draw)


def pr_png(pr: pd.DataFrame, *, prevalence: float | None = None) -> bytes:
    """Precision-recall curve; the prevalence line is what a random ranking achieves."""

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        axes.plot(pr["recall"], pr["precision"], drawstyle="steps-post", label="model")
        if prevalence is not None:
            axes.axhline(
                prevalence, linestyle="--", color="grey", label=f"prevalence {prevalence:.3f}"
            )
        axes.set(xlabel="Recall (sensitivity)", ylabel="Precision (PPV)")
        axes.set(xlim=(0, 1), ylim=(0, 1.01), title="Precision-recall curve (test split)")
        axes.legend(loc="upper right")

    return _render(draw)


def calibration_png(
    calibration: pd.DataFrame,
    *,
    ece: float | None = None,
    smooth: pd.DataFrame | None = None,
    smooth_cv: pd.DataFrame | None = None,
) -> bytes:
    """Calibration: the smoothed curve with its 95 % band (test), the out-of-fold smoothed
    curve, and the observed stroke rate per equal-count bin."""

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        tops = [calibration["mean_predicted"].max(), calibration["observed_rate"].max()]
        if smooth is not None:
            tops += [smooth["predicted"].max(), smooth["observed"].max()]
        limit = min(1.0, max(float(max(tops)) * 1.1, 0.05))  # zoom: stroke risks are small
        axes.plot([0, limit], [0, limit], linestyle="--", color="grey", label="perfect calibration")
        if smooth is not None:
            axes.fill_between(
                smooth["predicted"],
                smooth["ci_low"].astype(float),
                smooth["ci_high"].astype(float),
                color="tab:blue",
                alpha=0.2,
                linewidth=0,
                label="95% bootstrap band (test)",
            )
            axes.plot(
                smooth["predicted"], smooth["observed"], color="tab:blue", label="smoothed (test)"
            )
        if smooth_cv is not None:
            axes.plot(
                smooth_cv["predicted"],
                smooth_cv["observed"],
                color="tab:orange",
                linestyle="-.",
                label="smoothed (out of fold)",
            )
        axes.plot(
            calibration["mean_predicted"],
            calibration["observed_rate"],
            marker="o",
            linestyle="none",
            color="black",
            label="equal-count bins (test)",
        )
        title = "Calibration (test split)" + ("" if ece is None else f", ECE {ece:.3f}")
        axes.set(xlabel="Predicted probability", ylabel="Observed stroke rate")
        axes.set(xlim=(0, limit), ylim=(0, limit), title=title)
        axes.legend(loc="upper left", fontsize="small")

    return _render(draw)


def decision_curve_png(curve: pd.DataFrame) -> bytes:
    """Net benefit against threshold probability: model (test, with band; out of fold),
    treat all, treat none."""

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        percent = 100 * curve["threshold"]
        axes.fill_between(
            percent,
            curve["model_ci_low"].astype(float),
            curve["model_ci_high"].astype(float),
            color="tab:blue",
            alpha=0.2,
            linewidth=0,
            label="95% bootstrap band (test)",
        )
        axes.plot(percent, curve["model"], color="tab:blue", label="model (test)")
        axes.plot(
            percent,
            curve["model_cv"],
            color="tab:orange",
            linestyle="-.",
            label="model (out of fold)",
        )
        axes.plot(percent, curve["treat_all"], color="grey", label="treat all (test)")
        axes.plot(percent, curve["treat_none"], color="black", linewidth=0.8, label="treat none")
        top = float(max(curve["model_ci_high"].astype(float).max(), curve["treat_all"].max()))
        axes.set(xlim=(float(percent.min()), float(percent.max())), ylim=(-0.01, top * 1.1))
        axes.set(
            xlabel="Threshold probability (%)",
            ylabel="Net benefit (true positives per patient)",
            title="Decision curve",
        )
        axes.legend(loc="upper right", fontsize="small")

    return _render(draw)


def importance_png(importance: pd.DataFrame) -> bytes:
    """Horizontal bars of permutation importance, largest at the top."""
    ordered = importance.sort_values("importance", kind="stable")

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        axes.barh(ordered["feature"].astype(str), ordered["importance"])
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set(
            xlabel="Drop in test ROC AUC when the field is shuffled", title="Feature importance"
        )

    return _render(draw)


def write_png(path: str | Path, png: bytes) -> None:
    """Write PNG bytes atomically (a failed run leaves the previous figure intact)."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(png)


def render_report_figures(
    plots_dir: str | Path,
    figures_dir: str | Path,
    *,
    roc_auc: float | None = None,
    prevalence: float | None = None,
    ece: float | None = None,
) -> dict[str, Path]:
    """Render roc/pr/calibration/decision_curve/importance PNGs from the plot data.

    Returns figure name -> written path. Every input CSV is required: a missing one means
    the evaluate stage did not run, which should fail the report, not hide a figure.
    """
    plots, figures = Path(plots_dir), Path(figures_dir)
    frames = {name: read_plot_data(plots / f"{name}.csv", name) for name in PLOT_COLUMNS}
    renderers: dict[str, Callable[[], bytes]] = {
        "roc": lambda: roc_png(frames["roc"], roc_auc=roc_auc),
        "pr": lambda: pr_png(frames["pr"], prevalence=prevalence),
        "calibration": lambda: calibration_png(
            frames["calibration"],
            ece=ece,
            smooth=frames["calibration_smooth"],
            smooth_cv=frames["calibration_smooth_cv"],
        ),
        "decision_curve": lambda: decision_curve_png(frames["decision_curve"]),
        "importance": lambda: importance_png(frames["importance"]),
    }
    written: dict[str, Path] = {}
    for name, render in renderers.items():
        written[name] = figures / f"{name}.png"
        write_png(written[name], render())
    return written
