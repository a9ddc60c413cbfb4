"""The test protocol and its numbers: metrics over the bias grid and the evaluation of a pair of
stage-1 and stage-2 heads (which training, run folders and reference checkpoints all call)."""
