"""The version of what a run folder's files hold, and the reading of older ones."""

from __future__ import annotations

RUN_FORMAT = 2
"""What a run folder's files hold. 2: epochs count from 1 in every file (metrics.jsonl, the
stages' result.json, results.json, model and resume metadata), as on the console; the files
carry `run_format`. 1 (files without the field, clipclap 0.1): epochs counted from 0. Readers
take both (`numbered_from_one`), so runs of 0.1 resume and evaluate."""


def numbered_from_one(record: dict) -> dict:
    """A record that counts epochs from 0 (a run-format-1 metrics.jsonl line, stage result or
    resume state) with its epoch fields counted from 1. The caller knows the record's format
    (its file's `run_format`)."""
    out = dict(record)
    for key in ("epoch", "best_epoch"):
        if isinstance(out.get(key), int):
            out[key] += 1
    return out
