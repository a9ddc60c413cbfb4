"""The figures of `clipclap report --plots` (and of the HTML page): per run the bias curve,
per-class accuracy and training curves, and a methods x datasets comparison of S, U, HM and ZSL
with error bars.

Every figure stands alone: its title names dataset, split, head, settings and seeds, wrapped to
the figure's width (never cut: `_keep_inside` measures the drawn text and wraps it narrower
until it fits); both axes are labelled with units; legends sit outside the axes, so that they
cover no data; series differ by line style, marker or hatch (readable in greyscale). The PNG
also carries the title and axis labels as text. A training-free head, whose seeds give the same
results, gets one set of figures naming all its seeds, not one identical set per seed. Stage 2
validates on the stage-1 validation videos, which it trains on: its curve says so.

matplotlib is the `plots` extra. Each PNG is rendered beside its name and renamed over it: a
kill or a full disk leaves the old figure or the new one, never half a file. The runs drawn are
those `loading.load_run` checked, so every number a figure reads is finite; a metric a run's
results.json lacks (written before clipclap computed it) has no line or bar, not a zero.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path

from clipclap_cli.files import replacing
from clipclap_cli.metric_table import COMPARISON_METRICS, CURVE_METRICS, LABELS
from clipclap_cli.report.grouping import Cell, layout
from clipclap_cli.report.loading import RunResult
from clipclap_cli.runs.files import METRICS as TRAINING_LOG
from clipclap_cli.runs.files import stage_file

WIDTH = 7.2
"Inches: the width of a one-run figure (the per-class figure grows with its classes)"
DPI = 120
"Pixels per inch of the PNG: titles are measured and fitted at the resolution they are saved in"
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "--", "oo")


def _pyplot():
    from clipclap_cli.extras import need

    need("matplotlib", "plots", "report --plots").use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(plt, width: float, height: float, **kw):
    """A figure laid out by matplotlib's constrained layout: titles, labels and the legends
    placed outside the axes all get room."""
    return plt.subplots(figsize=(width, height), dpi=DPI, layout="constrained", **kw)


def _wrap(text: str, width: int) -> str:
    """Each line of `text` wrapped at `width` characters (its own line breaks kept)."""
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False) or line for line in text.split("\n"))


def _texts(fig) -> list:
    """The titles of a figure (its suptitle, among its texts, and each axes' title): the texts a
    long run name makes long."""
    return [t for t in fig.texts if t.get_text()] + [ax.title for ax in fig.axes if ax.title.get_text()]


def _legends(fig) -> list:
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def _keep_inside(fig) -> bool:
    """Wrap every title that runs past the figure's edge narrower until it fits: drawn, measured
    against the figure's box, rewrapped (a title is never cut). A legend wider than the figure
    (a long run name) has its longest labels wrapped. True when the canvas holds the figure as it
    stands (drawn after its last change), False when the tries ran out after a change."""
    originals = {id(t): t.get_text() for t in _texts(fig)}
    originals |= {id(t): t.get_text() for lg in _legends(fig) for t in lg.get_texts()}
    for t in _texts(fig):  # a first guess from the width: about 0.6 em a character
        chars = fig.bbox.width / (0.6 * t.get_fontsize() * fig.dpi / 72)
        t.set_text(_wrap(t.get_text(), max(20, int(chars))))
    for _ in range(12):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        out = [t for t in _texts(fig) if not inside(t.get_window_extent(renderer), fig.bbox)]
        wide = [lg for lg in _legends(fig) if not inside(lg.get_window_extent(renderer), fig.bbox)]
        if not out and not wide:
            return True
        for lg in wide:  # its longest labels wrapped
            widths = {id(t): t.get_window_extent(renderer).width for t in lg.get_texts()}
            out += [t for t in lg.get_texts() if widths[id(t)] > 0.8 * max(widths.values())]
        for t in out:
            longest = max(map(len, t.get_text().split("\n")))
            t.set_text(_wrap(originals[id(t)], max(10, int(longest * 0.85))))
    return False


def inside(box, frame, slack: float = 0.5) -> bool:
    """Whether bounding box `box` lies within `frame` (display units, `slack` pixels spare)."""
    return (box.x0 >= frame.x0 - slack and box.x1 <= frame.x1 + slack
            and box.y0 >= frame.y0 - slack and box.y1 <= frame.y1 + slack)


def _save(fig, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    """Save a figure whose title and axis labels are set, every title wrapped to fit; the PNG
    also carries them as text (Title, Description), so a figure sent on its own still says what
    it shows."""
    import matplotlib.image
    import matplotlib.pyplot as plt

    try:
        if not _keep_inside(fig):
            fig.canvas.draw()
        # The canvas as `_keep_inside` drew and measured it, written by the function `savefig`
        # ends in. `savefig` itself would lay the figure out and draw it twice more (most of the
        # time of `report --plots`), and what it wrote was not quite what was measured: twin axes
        # settle a pixel further over repeated layouts.
        with replacing(path) as tmp:  # whole or not at all, like every file clipclap writes
            matplotlib.image.imsave(tmp, fig.canvas.buffer_rgba(), format="png", origin="upper", dpi=DPI,
                                    metadata={"Title": title, "Description": f"x: {xlabel}; y: {ylabel}",
                                              "Software": "clipclap"})
    finally:
        plt.close(fig)
    return path


def _axes(ax, xlabel: str, ylabel: str) -> None:
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, color="0.85", linewidth=0.6)
    ax.set_axisbelow(True)


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


def _trained(run: RunResult) -> bool:
    """Whether a run's training log has a loss (a training-free head's has none)."""
    return any("total" in r["losses"] for _, rows in _stages(run) for r in rows)


def figure_sets(runs: list[RunResult]) -> list[list[RunResult]]:
    """The runs grouped by the figures they give, lowest seed first: a run of the same head,
    settings and data as another, with the same test results and nothing trained (a
    training-free head, whose seeds change nothing) would give the same figures, so its seeds
    share one set."""
    sets: dict[str, list[RunResult]] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        res = run.results
        same = json.dumps([run.group_key(), res["test"], res["test_curve"], res["per_class_accuracy"]],
                          sort_keys=True) if not _trained(run) else str(run.path)
        sets.setdefault(same, []).append(run)
    order = {str(r.path): i for i, r in enumerate(runs)}
    return sorted(sets.values(), key=lambda s: order[str(s[0].path)])


def write_run_figures(runs: list[RunResult], out_dir: Path) -> list[Path]:
    """The figures of every run (`write_plots`), one set for the seeds of a training-free head
    (`figure_sets`), named by the stem of its lowest seed (`plot_stems`)."""
    stems = plot_stems(runs)
    return [p for same in figure_sets(runs)
            for p in write_plots(same[0], out_dir, stems[str(same[0].path)], [r.seed for r in same])]


def _who(run: RunResult, seeds: list[int]) -> str:
    data = f", {run.data_tag}" if run.data_tag else ""
    where = f"{run.method} on {run.spec['dataset']} ({run.spec['split']}{data})"
    if len(seeds) > 1:
        return f"{where}, seeds {_ranges(sorted(seeds))} (the same results on each: nothing is trained)"
    return f"{where}, seed {seeds[0]}"


def write_plots(run: RunResult, out_dir: Path, stem: str | None = None, seeds: list[int] | None = None) -> list[Path]:
    """Per run: the test bias curve (S, U, HM against β, β* marked), per-class accuracy (seen
    and unseen told apart) and the training curves (loss and validation HM per epoch, the best
    epoch marked). Each names dataset, split, head and seed (`seeds`: every seed it stands
    for), labels both axes with units and tells its lines apart by style and marker, not by
    colour alone (readable in greyscale)."""
    plt = _pyplot()
    res = run.results
    stem = stem or plot_stem(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    who = _who(run, seeds or [run.seed])
    written = []
    curve, beta = res["test_curve"], res["test"]["beta"]
    fig, ax = _figure(plt, WIDTH, 4.4)
    every = max(1, len(curve["beta"]) // 12)
    for metric in (m for m in CURVE_METRICS if m.name in curve):
        style = metric.curve
        ax.plot(curve["beta"], [100 * v for v in curve[metric.name]], style.line, marker=style.marker,
                markevery=every, color="0.1", linewidth=style.width, label=style.legend)
    ax.axvline(beta, color="0.4", linestyle="-.", linewidth=1.2, label=f"chosen β* = {beta:.3f}")
    title = f"Test accuracy against the calibration bias β\n{who}"
    xlabel, ylabel = "calibration bias β (distance units)", "accuracy (%)"
    fig.suptitle(title)
    _axes(ax, xlabel, ylabel)
    fig.legend(loc="outside lower center", ncol=4, fontsize=8)
    written.append(_save(fig, out_dir / f"{stem}calibration.png", title, xlabel, ylabel))
    written.append(_per_class(plt, res, beta, who, out_dir / f"{stem}per-class.png"))
    training = _training_curves(run, who, out_dir / f"{stem}training.png")
    return written + ([training] if training else [])


def _per_class(plt, res: dict, beta: float, who: str, path: Path) -> Path:
    """Per-class test accuracy at β*: seen classes light, unseen dark and hatched; a class at 0 %
    keeps a visible stroke at the zero line."""
    acc = res["per_class_accuracy"]
    names = list(acc["seen"]) + list(acc["unseen"])
    values = [100 * v for v in acc["seen"].values()] + [100 * v for v in acc["unseen"].values()]
    fig, ax = _figure(plt, max(WIDTH, 0.18 * len(names) + 2), 4.6)
    seen = len(acc["seen"])
    ax.bar(range(seen), values[:seen], color="0.75", edgecolor="0.2", label=f"seen ({seen} classes)")
    ax.bar(range(seen, len(names)), values[seen:], color="0.35", edgecolor="0.1", hatch="//",
           label=f"unseen ({len(names) - seen} classes)")
    zeros = [i for i, v in enumerate(values) if v == 0]
    if zeros:
        ax.plot(zeros, [0] * len(zeros), linestyle="none", marker="_", markersize=7, markeredgewidth=2,
                color="0", label="0 % (a class never right)")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_xlim(-0.7, len(names) - 0.3)
    ax.set_ylim(-3, 102)  # below 0: a bar at 0 % shows its stroke above the axis
    ax.set_yticks(range(0, 101, 20))
    title = f"Per-class test accuracy at β* = {beta:.3f}\n{who}"
    xlabel, ylabel = "class", "accuracy at β* (%)"
    fig.suptitle(title)
    _axes(ax, xlabel, ylabel)
    fig.legend(loc="outside lower center", ncol=4, fontsize=8)
    return _save(fig, path, title, xlabel, ylabel)


def _stages(run: RunResult) -> list[tuple[int, list[dict]]]:
    """The training log of each stage that has one: (stage, its epochs' rows)."""
    stages = []
    for stage in (1, 2):
        f = stage_file(run.path, stage, TRAINING_LOG)
        if f.exists():
            rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            if rows:
                stages.append((stage, rows))
    return stages


VALIDATION = {1: ("validation HM (held-out videos)", "validation HM (%)"),
              2: ("HM on the stage-1 validation videos,\nwhich stage 2 trains on (not held out)",
                  "HM on its own training videos (%)")}
"Per stage: the legend and axis label of its validation curve (stage 2 trains on stage 1's validation videos)"


def _training_curves(run: RunResult, who: str, path: Path) -> Path | None:
    """Loss (left axis) and validation HM (right axis) per epoch of each stage, best epoch marked;
    stage 2's HM is labelled as measured on videos it trains on."""
    plt = _pyplot()
    stages = _stages(run)
    if not stages or not any("total" in r["losses"] for _, rows in stages for r in rows):
        return None  # nothing trained (a training-free head): no curves to draw
    from matplotlib.ticker import MaxNLocator

    offset = 0 if run.results.get("run_format", 1) >= 2 else 1  # runs of clipclap 0.1 counted epochs from 0
    fig, axes = _figure(plt, WIDTH * len(stages), 5.0, ncols=len(stages), squeeze=False)
    xlabel = "epoch (counted from 1)"
    for ax, (stage, rows) in zip(axes[0], stages, strict=True):
        epochs = [r["epoch"] + offset for r in rows]
        ax.plot(epochs, [r["losses"]["total"] for r in rows], "-", marker="o", color="0.1", label="training loss")
        twin = ax.twinx()
        legend, axis = VALIDATION[stage]
        twin.plot(epochs, [100 * r["val"]["hm"] for r in rows], "--", marker="s", color="0.45", label=legend)
        best = rows[-1].get("best_epoch")
        if best is not None:
            best += offset
            ax.axvline(best, color="0.3", linestyle=":", linewidth=1.2, label=f"best epoch {best}")
        twin.set_ylabel(axis)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"Stage {stage}" + (": trained on all stage-1 videos (train + validation)" if stage == 2
                                         else ": trained on the training videos"), fontsize=10)
        _axes(ax, xlabel, "training loss")
        lines = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, -0.14), ncol=3)  # below the axes: it covers no curve
    title = f"Training curves: {who}"
    fig.suptitle(title)
    return _save(fig, path, title, xlabel, "training loss; validation HM (%)")


def comparison_title(cells: list[Cell], metrics: tuple[str, ...] = COMPARISON_METRICS) -> str:
    """What the comparison shows and over how many seeds: 'mean ± std over N seeds' only where
    every method has N >= 2; one seed says it has no error bars."""
    ns = sorted({c.n for c in cells if c.n})
    shown = ", ".join(LABELS[m] for m in metrics[:-1]) + f" and {LABELS[metrics[-1]]}" if len(metrics) > 1 \
        else LABELS[metrics[0]]
    if ns == [1]:
        over = "one seed per method (no error bars)"
    elif ns[0] > 1:
        over = f"mean ± std over {ns[0]} seeds" if len(ns) == 1 else \
            f"mean ± std over {'/'.join(map(str, ns))} seeds (n per method in the legend)"
    else:
        over = (f"mean over {'/'.join(map(str, ns))} seeds (n per method in the legend); "
                "error bars (± std) where n ≥ 2")
    return f"Test {shown} per method and dataset: {over}"


def write_comparison(cells: list[Cell], out_dir: Path, metrics: tuple[str, ...] = COMPARISON_METRICS) -> Path | None:
    """Methods x datasets x `metrics`: one panel per dataset, the mean over seeds as bars with
    its value written above (a bar at 0 is seen), the standard deviation as error bars where n
    >= 2, each method's n and seeds in the legend (outside the panels); hatches tell methods
    apart in greyscale."""
    measured = [c for c in cells if c.n]
    if not measured:
        return None
    plt = _pyplot()
    methods, datasets, by = layout(measured)
    width = 0.8 / len(methods)
    panel = max(3.6, 0.32 * len(methods) * len(metrics) + 1)
    fig, axes = _figure(plt, min(40.0, max(WIDTH, panel * len(datasets) + 0.8)), 4.8, ncols=len(datasets),
                        squeeze=False, sharey=True)
    vertical = len(methods) > 2  # value labels turned on their side where bars are narrow
    top = 0.0
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for i, method in enumerate(methods):
            cell = by.get((method, dataset))
            if cell is None:
                continue
            # no bar where the cell lacks the metric (runs written before it was computed), not a zero
            shown = [(j, m) for j, m in enumerate(metrics) if m in cell.mean]
            xs = [j + (i - (len(methods) - 1) / 2) * width for j, _ in shown]
            means = [cell.mean[m] for _, m in shown]
            errs = [cell.std[m] if cell.n > 1 else 0 for _, m in shown]
            ax.bar(xs, means, width, yerr=errs if cell.n > 1 else None, capsize=3,
                   color=str(0.25 + 0.6 * i / max(1, len(methods) - 1)), edgecolor="0.1",
                   hatch=HATCHES[i % len(HATCHES)], label=method)
            for x, mean, err in zip(xs, means, errs, strict=True):
                ax.annotate(f"{mean:.1f}", (x, mean + err), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7, rotation=90 if vertical else 0)
                top = max(top, mean + err)
        ax.set_xticks(range(len(metrics)), [LABELS[m] for m in metrics])
        ax.set_title(dataset, fontsize=10)
        _axes(ax, "metric", "accuracy (%)" if ax is axes[0][0] else "")
    from matplotlib.ticker import FixedLocator, MaxNLocator

    high = max(10.0, top) * (1.25 if vertical else 1.12)  # room for the values above the bars
    axes[0][0].set_ylim(-0.03 * high, high)  # below 0: a bar at 0 % shows its stroke above the axis
    ticks = MaxNLocator(6).tick_values(0, min(100.0, high))
    axes[0][0].yaxis.set_major_locator(FixedLocator([t for t in ticks if 0 <= t <= min(100.0, high)]))
    handles, _ = axes[0][0].get_legend_handles_labels()
    names = []
    for method in methods:
        of = [c for c in measured if c.method == method]
        n = sorted({c.n for c in of})
        seeds = sorted({s for c in of for s in c.seeds})
        names.append(f"{method} (n = {'/'.join(map(str, n))}; seed{'s' if len(seeds) > 1 else ''} {_ranges(seeds)})")
    # side by side where the names fit a line of the figure (about 0.55 em a character), else one a row
    columns = len(methods) if sum(map(len, names)) * 0.55 * 8 / 72 < fig.get_figwidth() - 1 else 1
    if len(handles) == len(methods):
        fig.legend(handles, names, loc="outside lower center", ncol=columns, fontsize=8)
    else:  # a method missing from the first panel: every panel's handles, by method
        by_label = {}
        for ax in axes[0]:
            for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
                by_label.setdefault(label, h)
        fig.legend([by_label[m] for m in methods], names, loc="outside lower center", ncol=columns, fontsize=8)
    title = comparison_title(measured, metrics)
    fig.suptitle(title)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _save(fig, out_dir / "comparison.png", title, "metric, per dataset", "accuracy (%)")


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
