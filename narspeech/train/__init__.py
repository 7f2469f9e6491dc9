"""Training engine: config-driven trainer, checkpoints, DDP helpers, loss terms."""
