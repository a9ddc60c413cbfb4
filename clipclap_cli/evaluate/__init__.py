"""The test protocol and its numbers: metrics over the bias grid, the evaluation of a pair of
stage-1 and stage-2 heads (which training, run folders and checkpoints all call), and reports."""
