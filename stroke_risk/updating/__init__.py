"""Closing the loop: outcome labels -> external validation -> an update chosen by a declared plan.

collect (labelled predictions out of the prediction log, with provenance), validation (the
deployed model on the outcomes it met, next to its development estimates), protocol (the
change-control plan's statistics: minimum events, closed testing, acceptance on held-out
labels), recalibrated (an accepted recalibration as a fitted pipeline of the same family),
simulation (the planted scenarios the tests and benchmarks/updating.py run).
"""
