"""Tasks: data, reference models, metrics and the training loop."""
