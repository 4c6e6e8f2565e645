"""The log-odds (logit) of probabilities, the one definition every caller uses.

Calibration, the explainers, the service's risk factors and the alert benchmark all call it.
"""

from __future__ import annotations

import numpy as np


def logit(probability: np.ndarray, *, floor: float) -> np.ndarray:
    """log(p / (1 - p)) of each probability, computed as log(p) - log1p(-p) (exact near 1).

    p is clipped to [floor, 1 - floor] first when floor > 0 (finite log-odds for any input);
    with floor 0 nothing is clipped, so p = 0 or 1 gives -inf or +inf. The floor is a required
    argument because callers differ on purpose: calibration clips at 1e-6, an explanation
    must add up to the logit of the model's own probability (forests: clipped at 1e-6).
    """
    p = np.asarray(probability, dtype=float)
    if floor > 0:
        p = np.clip(p, floor, 1 - floor)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)
