"""Training: settings, the trainer, run folders (resumable), checkpoints, and runs side by side in
worker processes."""
