"""`--dry-run` of `train` and `extract`: the plan printed (a table, or `--json`), nothing written."""

from __future__ import annotations

from pathlib import Path

from clipclap_cli.cli.console import err, out, print_json, table


def duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h': an estimate's size, not a clock."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def show_train_plan(work, launcher, runs_dir: Path, as_json: bool) -> None:
    """The dry run of a train command's `work` (`scheduler.planned`) under `launcher`."""
    from clipclap_cli.train.preview import preview

    p = preview(work, launcher, runs_dir)
    if as_json:
        print_json(p.as_json())
        return
    rows = [[r.folder, r.head, r.seed, ", ".join(r.departs) or "-", r.state, r.progress,
             duration(r.seconds) if r.epochs_left else "-"] for r in p.runs]
    out.print(table(f"{len(p.runs)} runs (dry run: nothing trained or written)",
                    ["folder", "head", "seed", "departs", "state", "progress", "estimate"], rows))
    counts = {s: sum(r.state == s for r in p.runs) for s in ("done", "partly done", "pending")}
    err.print(f"{counts['done']} done, {counts['partly done']} partly done, {counts['pending']} pending; "
              f"launcher: {p.where}, {p.tasks} task(s); about {duration(p.seconds)} "
              f"(from {p.estimated_from})")


def show_extract_plan(job, part, workers: int, retry_failed: bool, as_json: bool) -> None:
    """The dry run of an extract command's `job` for this process's shard `part`."""
    from clipclap_cli.extract.preview import preview

    p = preview(job, part, workers, retry_failed)
    if as_json:
        print_json(p.as_json())
        return
    rows = [[s["shard"] + (" (this one)" if s["this process"] and part.count > 1 else ""), s["chunks"],
             s["videos"], s["pending"]] for s in p.shards]
    out.print(table(f"{p.videos} videos: {p.done} done, {p.failed} failed, {p.pending} pending "
                    "(dry run: nothing extracted or written)", ["shard", "chunks", "videos", "pending"], rows))
    err.print(f"status from {p.found_in}; about {duration(p.seconds)} for this process "
              f"({p.per_video:.2f} s a video, from a measured step)")
