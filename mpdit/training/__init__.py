"""Training backend: data, checkpoints, the training loop, sampling from checkpoints."""
