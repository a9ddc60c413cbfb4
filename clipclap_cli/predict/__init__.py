"""Predictions from a trained model: classes ranked for samples (scoring), the rows a command
writes (output), class names given by the user (classes) and the training-free head (zeroshot)."""
