"""Floor 3, the models: pipelines, tuning, reproducible fits, explanations, serving artifact."""
