"""Floor 3, watching the served model: the prediction log, drift and live-performance statistics
(pure functions).
"""
