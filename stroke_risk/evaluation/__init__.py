"""Floor 2, judging a model: metrics, thresholds, calibration, decision curves, comparisons."""
