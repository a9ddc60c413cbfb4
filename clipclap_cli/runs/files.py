"""The names of a run folder's files, in one place: every module that reads or writes a run
spells them through here (runs/__init__.py describes what each holds).

The names are part of the run format: a run folder written by any clipclap keeps them.
"""

from __future__ import annotations

from pathlib import Path

RUN_MARKER = ".clipclap-run"
"""The file clipclap writes first into every run folder it makes (JSON: the run's format)."""
CONFIG = "config.json"
"What defines the run, the store, the data's digest and the CPU threads"
RESULTS = "results.json"
"The test evaluation"
LOCK = "train.lock"
"Held while a process trains the run"
METRICS = "metrics.jsonl"
"A stage's log: one line per completed epoch"
STAGE_RESULT = "result.json"
"A finished stage's result"
CHECKPOINT = "checkpoint-last.safetensors"
"A stage's resume state (removed when the stage ends)"
BEST_MODEL = "best.safetensors"
"A stage's model of its best epoch by validation HM"
FINAL_MODEL = "final.safetensors"
"A stage's model after its last epoch"


def stage_folder(run: Path, stage: int) -> Path:
    """`run/stage1` or `run/stage2`."""
    return Path(run) / f"stage{stage}"


def stage_file(run: Path, stage: int, name: str) -> Path:
    """A file of a stage's folder, e.g. `stage_file(run, 1, METRICS)`."""
    return stage_folder(run, stage) / name


def stage_name(stage: int, name: str) -> str:
    """A stage's file as a path relative to the run folder, as messages name it: `stage1/metrics.jsonl`."""
    return f"stage{stage}/{name}"


def evaluated_models(run: Path) -> tuple[Path, Path]:
    """The two models the test protocol reads: stage 1's best (its β* on validation) and stage 2's final."""
    return stage_file(run, 1, BEST_MODEL), stage_file(run, 2, FINAL_MODEL)
