"""Training runs: the trainer, a run's stages (resumable by epoch), stacked seeds, and runs side by
side in worker processes or on torchrun's ranks."""
