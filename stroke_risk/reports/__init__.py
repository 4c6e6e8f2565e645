"""Floor 4, documents written from the pipeline's outputs: model card, TRIPOD+AI, figures."""
