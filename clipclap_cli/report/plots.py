"""The figures of `clipclap report --plots` (and of the HTML page): per run the bias curve,
per-class accuracy and training curves, and a methods x datasets comparison with error bars.

Every figure names dataset, split, head(s) and seeds in its title, labels both axes with units
and tells its series apart by line style, marker or hatch (readable in greyscale). The PNG also
carries the title and axis labels as text, so a figure sent on its own still says what it shows.
matplotlib is the `plots` extra. Each PNG is rendered beside its name and renamed over it: a
kill or a full disk leaves the old figure or the new one, never half a file. The runs drawn are
those `loading.load_run` checked, so every number a figure reads is finite; a metric a run's
results.json lacks (written before clipclap computed it) has no line or bar, not a zero.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from clipclap_cli.files import replacing
from clipclap_cli.metric_table import CURVE_METRICS, LABELS
from clipclap_cli.report.grouping import Cell, layout
from clipclap_cli.report.loading import RunResult
from clipclap_cli.runs.files import METRICS as TRAINING_LOG
from clipclap_cli.runs.files import stage_file


def _pyplot():
    from clipclap_cli.extras import need

    need("matplotlib", "plots", "report --plots").use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    """Save a figure whose title and axis labels are set; the PNG also carries them as text
    (Title, Description), so a figure sent on its own still says what it shows."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        with replacing(path) as tmp:  # whole or not at all, like every file clipclap writes
            fig.savefig(tmp, format="png", dpi=120,
                        metadata={"Title": title, "Description": f"x: {xlabel}; y: {ylabel}", "Software": "clipclap"})
    finally:
        plt.close(fig)
    return path


def _axes(ax, title: str, xlabel: str, ylabel: str) -> tuple[str, str, str]:
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, color="0.85", linewidth=0.6)
    return title, xlabel, ylabel


def plot_stem(run: RunResult) -> str:
    """The start of the names of a run's figures: dataset_method_seed, from its folder, and the
    data it was trained on where its dataset's runs were trained on different data."""
    stem = "_".join(run.path.parts[-3:]).replace(",", "_").replace("=", "-")
    if run.data_tag.startswith("data "):
        stem += "_" + run.data_tag.replace(" ", "-")
    elif run.data_tag:  # a store's path: its digest, not its slashes
        stem += "_store-" + hashlib.blake2b(run.data_tag.encode(), digest_size=4).hexdigest()
    return re.sub(r"[^\w.-]", "-", stem) + "-"


def plot_stems(runs: list[RunResult]) -> dict[str, str]:
    """Each run's stem (by its path), told apart by a number where two runs would share one
    (folders named alike in different places): no run's figure overwrites another's."""
    stems: dict[str, str] = {}
    for run in runs:
        stem = plot_stem(run)
        taken = set(stems.values())
        n = 2
        while stem in taken:
            stem, n = f"{plot_stem(run)[:-1]}_{n}-", n + 1
        stems[str(run.path)] = stem
    return stems


def write_plots(run: RunResult, out_dir: Path, stem: str | None = None) -> list[Path]:
    """Per run: the test bias curve (S, U, HM against β, β* marked), per-class accuracy (seen
    and unseen told apart) and the training curves (loss and validation HM per epoch, the best
    epoch marked). Each names dataset, split, head and seed, labels both axes with units and
    tells its lines apart by style and marker, not by colour alone (readable in greyscale)."""
    plt = _pyplot()
    res = run.results
    stem = stem or plot_stem(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = f", {run.data_tag}" if run.data_tag else ""
    who = f"{run.method} on {run.spec['dataset']} ({run.spec['split']}{data}), seed {run.seed}"
    written = []
    curve, beta = res["test_curve"], res["test"]["beta"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    every = max(1, len(curve["beta"]) // 12)
    for metric in (m for m in CURVE_METRICS if m.name in curve):
        style = metric.curve
        ax.plot(curve["beta"], [100 * v for v in curve[metric.name]], style.line, marker=style.marker,
                markevery=every, color="0.1", linewidth=style.width, label=style.legend)
    ax.axvline(beta, color="0.4", linestyle="-.", linewidth=1.2, label=f"chosen β* = {beta:.3f}")
    labels = _axes(ax, f"Test accuracy against the calibration bias β\n{who}", "calibration bias β (distance units)",
                   "accuracy (%)")
    ax.legend()
    written.append(_save(fig, out_dir / f"{stem}calibration.png", *labels))
    acc = res["per_class_accuracy"]
    names = list(acc["seen"]) + list(acc["unseen"])
    values = [100 * v for v in acc["seen"].values()] + [100 * v for v in acc["unseen"].values()]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.18 * len(names)), 4.2))
    seen = len(acc["seen"])
    ax.bar(range(seen), values[:seen], color="0.75", edgecolor="0.2", label=f"seen ({seen} classes)")
    ax.bar(range(seen, len(names)), values[seen:], color="0.35", edgecolor="0.1", hatch="//",
           label=f"unseen ({len(names) - seen} classes)")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    labels = _axes(ax, f"Per-class test accuracy at β* = {beta:.3f}\n{who}", "class", "accuracy at β* (%)")
    ax.set_ylim(0, 118)  # headroom above 100 % for the legend, so that it covers no bar
    ax.set_yticks(range(0, 101, 20))
    ax.legend(loc="upper right", ncol=2)
    written.append(_save(fig, out_dir / f"{stem}per-class.png", *labels))
    training = _training_curves(run, who, out_dir / f"{stem}training.png")
    return written + ([training] if training else [])


def _training_curves(run: RunResult, who: str, path: Path) -> Path | None:
    """Loss (left axis) and validation HM (right axis) per epoch of each stage, best epoch marked."""
    plt = _pyplot()
    stages = []
    for stage in (1, 2):
        f = stage_file(run.path, stage, TRAINING_LOG)
        if f.exists():
            rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            if rows:
                stages.append((stage, rows))
    if not stages or not any("total" in r["losses"] for _, rows in stages for r in rows):
        return None  # nothing trained (a training-free head): no curves to draw
    offset = 0 if run.results.get("run_format", 1) >= 2 else 1  # runs of clipclap 0.1 counted epochs from 0
    fig, axes = plt.subplots(1, len(stages), figsize=(6.4 * len(stages), 4.8), squeeze=False)
    for ax, (stage, rows) in zip(axes[0], stages, strict=True):
        epochs = [r["epoch"] + offset for r in rows]
        ax.plot(epochs, [r["losses"]["total"] for r in rows], "-", marker="o", color="0.1", label="training loss")
        twin = ax.twinx()
        twin.plot(epochs, [100 * r["val"]["hm"] for r in rows], "--", marker="s", color="0.45",
                  label="validation HM")
        best = rows[-1].get("best_epoch")
        if best is not None:
            best += offset
            ax.axvline(best, color="0.3", linestyle=":", linewidth=1.2, label=f"best epoch {best}")
        twin.set_ylabel("validation HM (%)")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _axes(ax, f"Stage {stage}", "epoch (counted from 1)", "training loss")
        lines = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), ncol=3)  # below the axes: it covers no curve
    title = f"Training curves: {who}"
    fig.suptitle(title)
    return _save(fig, path, title, "epoch (counted from 1)", "training loss; validation HM (%)")


def write_comparison(cells: list[Cell], out_dir: Path, metric: str) -> Path | None:
    """Methods x datasets: the mean `metric` over seeds as bars, the standard deviation as error
    bars, n under each method; hatched bars tell methods apart in greyscale."""
    measured = [c for c in cells if c.n]
    if not measured:
        return None
    plt = _pyplot()
    methods, datasets, by = layout(measured)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.2 * len(datasets) * len(methods)), 4.2))
    hatches = ("", "//", "..", "xx", "\\\\", "++", "--", "oo")
    for i, method in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(datasets))]
        cells_here = [by.get((method, d)) for d in datasets]
        n = sorted({c.n for c in cells_here if c})
        seeds = sorted({s for c in cells_here if c for s in c.seeds})
        # no bar where the cell lacks the metric (runs written before it was computed), not a zero
        drawn = [(x, c) for x, c in zip(xs, cells_here, strict=True) if c is None or metric in c.mean]
        ax.bar([x for x, _ in drawn], [c.mean[metric] if c else 0 for _, c in drawn], width,
               yerr=[c.std[metric] if c and c.n > 1 else 0 for _, c in drawn], capsize=3,
               color=str(0.25 + 0.6 * i / max(1, len(methods) - 1)), edgecolor="0.1", hatch=hatches[i % len(hatches)],
               label=f"{method} (n = {'/'.join(map(str, n))}; seeds {_ranges(seeds)})")
    ax.set_xticks(range(len(datasets)), datasets)
    title = f"Test {LABELS[metric]} per method and dataset: mean ± std over seeds"
    labels = _axes(ax, title, "dataset (split, where not cls_split)", f"{LABELS[metric]} (%)")
    ax.legend(fontsize=8)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _save(fig, out_dir / f"comparison-{metric}.png", *labels)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7': seeds as people write them."""
    out, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}–{n}")
            start = None
    return ", ".join(out)
