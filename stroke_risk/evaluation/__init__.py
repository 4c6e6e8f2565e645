"""Floor 2, judging a model: metrics with intervals, thresholds, calibration, decision curves,
comparisons, sample size, instability.
"""
