"""Floor 4, where runs and artifacts live: MLflow runs and tracking server, the DVC remote,
experiment overrides.
"""
