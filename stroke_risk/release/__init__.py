"""Floor 4, releasing a model: gates on held-out data, signatures, the release record, promotion."""
