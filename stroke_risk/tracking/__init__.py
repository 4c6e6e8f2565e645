"""Floor 4, where runs live: MLflow runs and server, the DVC remote, experiment overrides."""
