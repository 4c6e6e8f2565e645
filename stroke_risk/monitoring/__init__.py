"""Floor 3, watching the served model: prediction log, drift and live-performance statistics."""
