"""Floor 3, the models: pipelines per family, tuning, reproducible fits, explanations, fast serving
tables and the data-only serving artifact.
"""
