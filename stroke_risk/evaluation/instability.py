"""Prediction instability (Riley & Collins 2023, Biometrical Journal, doi:10.1002/bimj.202200302).

A model developed on a few hundred events could have come out differently from another
sample of the same population. Following the paper: draw B bootstrap samples of the
development data, refit the model on each with the chosen hyper-parameters (the same
development process, without re-tuning), and predict every original patient with each
bootstrap model. For patient i with original prediction p_i and bootstrap predictions
p_bi:

- the per-patient mean absolute prediction error is MAPE_i = mean_b |p_bi - p_i|;
- the model's MAPE is the mean of MAPE_i over patients;
- the instability plot (stroke_risk.reports.instability_plot) shows p_bi against p_i, with each
  patient's 95% range of p_bi.

A model whose refits never change gives MAPE 0; the wider the ranges, the less an
individual prediction should be read as that patient's risk. The refits themselves are made
by stroke_risk.models.bootstrap_refits (fitting is model development); this module holds the
statistics of their predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METHOD = (
    "Riley & Collins (2023): the development (training) split resampled with replacement "
    "B times, the tuned pipeline refitted on each resample with the chosen hyper-parameters "
    "(no re-tuning), every training patient predicted by each refit and compared with the "
    "original model's prediction"
)
BAND_QUANTILES = (0.025, 0.975)


def per_patient_instability(original: np.ndarray, bootstrap: np.ndarray) -> pd.DataFrame:
    """One row per patient: original, the 2.5/50/97.5% bootstrap predictions, MAPE_i."""
    low, median, high = np.quantile(bootstrap, (BAND_QUANTILES[0], 0.5, BAND_QUANTILES[1]), axis=0)
    return pd.DataFrame(
        {
            "original": original,
            "bootstrap_low": low,
            "bootstrap_median": median,
            "bootstrap_high": high,
            "mean_absolute_error": np.mean(np.abs(bootstrap - original), axis=0),
        }
    )


def instability_summary(original: np.ndarray, bootstrap: np.ndarray) -> dict[str, float]:
    """MAPE (mean over patients of MAPE_i), its largest patient value, and the median and
    90th percentile of the per-patient 95% range width."""
    table = per_patient_instability(original, bootstrap)
    width = (table["bootstrap_high"] - table["bootstrap_low"]).to_numpy()
    return {
        "mape": float(table["mean_absolute_error"].mean()),
        "mape_max": float(table["mean_absolute_error"].max()),
        "range95_width_median": float(np.median(width)),
        "range95_width_p90": float(np.quantile(width, 0.9)),
    }


def instability_report(
    original: np.ndarray, bootstrap: np.ndarray, *, seed: int
) -> dict[str, object]:
    """reports/instability.json: the method, the refits' count and seed, the patients and
    the instability_summary figures (rounded to 6 digits)."""
    return {
        "method": METHOD,
        "n_bootstrap": len(bootstrap),
        "seed": seed,
        "patients": len(original),
        **{
            name: round(value, 6)
            for name, value in instability_summary(original, bootstrap).items()
        },
    }
