"""Floor 1, the data: the input schema, engineered features, reading and splitting the raw CSV."""
