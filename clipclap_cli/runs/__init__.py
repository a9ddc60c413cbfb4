"""Training runs on disk: one folder per run, resumable stage by stage.

    <run>/.clipclap-run                the marker, written first: clipclap made this folder (runs write
                                       only into such folders, new or empty ones, never into a store)
    <run>/config.json                  what was asked (dataset, split, head, params, settings), the
                                       store, a digest of the data read and the CPU threads used
    <run>/stage{1,2}/metrics.jsonl     one line per completed epoch
    <run>/stage{1,2}/checkpoint-last.safetensors   resume state (removed when the stage ends)
    <run>/stage{1,2}/best.safetensors, final.safetensors   models with JSON metadata
    <run>/stage{1,2}/result.json       best epoch, validation HM and betas
    <run>/results.json                 the test evaluation (deterministic: same seed and threads, same bytes)
    <run>/train.lock                   while a process trains the run: its host and pid (one at a time)

Epochs count from 1 in every file, as on the console (`trainer.RUN_FORMAT`); accuracies in
files are fractions (0-1), each JSON file says so in `units`, and what people read is percent.

The names above are spelled in one place, files.py. This layer holds what both training and
evaluation read and write about runs: spec (what a run is, the head it builds), files (the
names), config (config.json read and checked), finding (is this a run, which run or store is a
path in), folder (creating or reopening a run folder, its threads, the data it recorded), plan
(from a `train` command to its runs), results (a run's test evaluation), checkpoints and
run_format (the files' bytes and versions), reference_checkpoints (the reference's own models).
Training them is clipclap_cli.train; the arithmetic of evaluation is clipclap_cli.evaluate.
"""
