"""The figures of `clipclap report --plots` stand alone (issue 43 item 6): titles wrapped to the
figure, never cut; legends outside the data; the comparison shows S, U, HM and ZSL with zero bars
visible and n in its title; a training-free head gets one set of figures for all its seeds;
stage 2's validation curve says it is measured on videos stage 2 trains on; and the HTML page,
rendered in headless Chromium, loads every figure.

Figures are checked on the matplotlib objects as saved: each figure is measured (text and
legend boxes against the figure's and the axes') right after its titles are fitted, at the
resolution of the PNG. No new training but the training-free head's two seeds (a validation
pass each)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")  # the plots extra; `make test` installs it

from clipclap_cli.plugins.manager import make_plugin_manager
from clipclap_cli.report import plots
from clipclap_cli.report.grouping import Cell
from clipclap_cli.report.loading import load_run
from debian_tools import CHROMIUM, program

LONG_STORE = "store /scratch/a-rather-long-project-folder/features/ucf-cls-split-clip-clap/store.zarr"
"A data label as long as a real store path: with a run name's settings it overflows one title line"


@dataclass
class Drawn:
    """One figure as saved: its boxes in pixels."""

    fig: object
    frame: object
    titles: list
    "(text, box) of its suptitle and each axes' title"
    legends: list
    axes: list


@pytest.fixture
def drawn(monkeypatch) -> list[Drawn]:
    """Every figure `plots` saves, measured right after its titles are fitted (`_keep_inside`)."""
    seen: list[Drawn] = []
    fit = plots._keep_inside

    def measured(fig):
        fit(fig)
        r = fig.canvas.get_renderer()
        texts = [t for t in fig.texts if t.get_text()] + [ax.title for ax in fig.axes if ax.title.get_text()]
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        seen.append(Drawn(fig, fig.bbox, [(t.get_text(), t.get_window_extent(r)) for t in texts],
                          [lg.get_window_extent(r) for lg in legends],
                          [ax.get_window_extent(r) for ax in fig.axes]))

    monkeypatch.setattr(plots, "_keep_inside", measured)
    return seen


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _stands_alone(d: Drawn) -> None:
    """Every title inside the figure, no legend on an axes (the data) or a title, every legend
    inside the figure."""
    for text, box in d.titles:
        assert plots.inside(box, d.frame), (text, box, d.frame)
        assert not any(_overlap(box, lg) for lg in d.legends), text
    for lg in d.legends:
        assert plots.inside(lg, d.frame) and not any(_overlap(lg, ax) for ax in d.axes), (lg, d.axes)


def _letters(text: str) -> str:
    """The text without its spaces and line breaks: what wrapping must keep (a word longer than
    a line, such as a path, is broken)."""
    return "".join(text.split())


def test_a_long_title_is_wrapped_inside_the_figure_and_legends_cover_no_data(trained_run, tmp_path, drawn):
    """A run name with settings and a long data label: every title of the run's three figures
    is wrapped onto more lines, none cut at an edge, and no legend covers an axes or a title;
    the PNG keeps the whole title as text."""
    from PIL import Image

    run = load_run(trained_run)
    run.data_tag = LONG_STORE
    written = plots.write_plots(run, tmp_path)
    assert [p.name.removeprefix(plots.plot_stem(run)) for p in written] == [
        "calibration.png", "per-class.png", "training.png"]
    assert len(drawn) == 3
    for d, png in zip(drawn, written, strict=True):
        _stands_alone(d)
        title, _ = d.titles[0]  # the suptitle: what the figure shows, for whom
        full = Image.open(png).text["Title"]
        assert _letters(title) == _letters(full) and LONG_STORE in full and run.method in full
        assert title.count("\n") > full.count("\n"), title  # wrapped: one line would run past the edge
        width, height = Image.open(png).size
        assert abs(width - d.frame.width) < 1 and abs(height - d.frame.height) < 1  # measured as saved


def _cell(method: str, n: int, mean: dict, std: dict | None = None) -> Cell:
    return Cell(method, "demo", n, mean, std or dict.fromkeys(mean, 0.0), seeds=list(range(1, n + 1)))


ONE = {"seen": 0.0, "unseen": 40.0, "hm": 0.0, "zsl": 12.5}
TWO = {"seen": 55.0, "unseen": 30.0, "hm": 38.8, "zsl": 0.0}
LONG = ("clipclap (epochs=3, batches-per-epoch=30, lr=0.0001, dropout=0.2, weight-decay=0.001, batch-size=256, "
        "beta-grid=0:5:61, lr-scheduler=false)")
"A row name with its settings longer than a line of the comparison's legend"


def _bars(fig) -> dict[float, float]:
    """Every bar's height by its x centre, over all panels."""
    from matplotlib.patches import Rectangle

    return {round(p.get_x() + p.get_width() / 2, 6): p.get_height() for ax in fig.axes for p in ax.patches
            if isinstance(p, Rectangle)}


def test_the_comparison_shows_every_metric_zero_bars_and_n(tmp_path, drawn):
    """One seed per method: S, U, HM and ZSL per method, a value over every bar ('0.0' over a
    bar at 0, which stands above the axis' lower limit), no error bars and no 'mean ± std' in the
    title; n and seeds of each method in the legend, outside the panel."""
    path = plots.write_comparison([_cell(LONG, 1, ONE), _cell("zeroshot", 1, TWO)], tmp_path)
    assert path.name == "comparison.png"
    [d] = drawn
    _stands_alone(d)
    [ax] = d.fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["S", "U", "HM", "ZSL"]
    heights = sorted(_bars(d.fig).values())
    assert heights == sorted([*ONE.values(), *TWO.values()])  # 8 bars: every metric of both methods
    values = [t for t in ax.texts if re.fullmatch(r"\d+\.\d", t.get_text())]
    assert sorted(float(t.get_text()) for t in values) == sorted(round(v, 1) for v in heights)
    assert ax.get_ylim()[0] < 0  # a bar at 0 % draws its stroke above the axis
    assert not [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    title = d.titles[0][0].replace("\n", " ")
    assert "±" not in title and "one seed per method (no error bars)" in title
    [legend] = d.fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert [_letters(t) for t in labels] == [_letters(f"{LONG} (n = 1; seed 1)"), _letters("zeroshot (n = 1; seed 1)")]
    assert "\n" in labels[0] and "\n" not in labels[1]  # only the label too long for the figure is wrapped


@pytest.mark.parametrize(("ns", "says"), [
    ((3, 3), "mean ± std over 3 seeds"),
    ((1, 3), "mean over 1/3 seeds (n per method in the legend); error bars (± std) where n ≥ 2"),
])
def test_the_comparison_title_says_over_how_many_seeds(tmp_path, drawn, ns, says):
    """Error bars only for a method of n >= 2; the title says n, whatever mix the table has."""
    spread = dict.fromkeys(ONE, 2.5)
    cells = [_cell(f"m{i}", n, mean, spread if n > 1 else None) for i, (n, mean) in enumerate(zip(ns, (ONE, TWO),
                                                                                                  strict=True))]
    plots.write_comparison(cells, tmp_path)
    [d] = drawn
    _stands_alone(d)
    assert says in d.titles[0][0].replace("\n", " ")
    [ax] = d.fig.axes
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == sum(n > 1 for n in ns)


def test_the_comparison_has_one_panel_per_dataset(tmp_path, drawn):
    cells = [_cell("a", 1, ONE), Cell("a", "ucf (main_split)", 1, TWO, dict.fromkeys(TWO, 0.0), seeds=[1])]
    plots.write_comparison(cells, tmp_path)
    [d] = drawn
    _stands_alone(d)
    assert [ax.get_title() for ax in d.fig.axes] == ["demo", "ucf (main_split)"]


@pytest.fixture(scope="module")
def zeroshot_runs(tmp_path_factory, demo_store) -> Path:
    """The training-free head, seeds 42 and 43 (a validation pass each, nothing trained)."""
    from clipclap_cli.cli import run

    runs = tmp_path_factory.mktemp("zeroshot") / "runs"
    assert run(["train", "demo", "--head", "zeroshot", "--seeds", "2", "--store", str(demo_store),
                "--runs-dir", str(runs)], make_plugin_manager(entrypoints=False)) == 0
    return runs / "demo" / "zeroshot"


def test_a_training_free_head_gets_one_set_of_figures_for_all_its_seeds(cli, zeroshot_runs, tmp_path):
    """zeroshot's seeds give the same results: one bias curve and one per-class figure (no
    training curves: nothing is trained) naming both seeds, and the comparison; not one
    identical set per seed."""
    from PIL import Image

    results = [json.loads((zeroshot_runs / f"seed{s}" / "results.json").read_text()) for s in (42, 43)]
    assert results[0]["test"] == results[1]["test"]  # the premise: nothing differs by seed
    folder = tmp_path / "plots"
    r = cli("report", zeroshot_runs, "--plots", folder)
    assert r.exit_code == 0 and f"3 plots written to {folder}" in r.stderr, r
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["comparison.png", "demo_zeroshot_seed42-calibration.png", "demo_zeroshot_seed42-per-class.png"]
    for name in names[1:]:
        title = Image.open(folder / name).text["Title"]
        assert "seeds 42–43 (the same results on each: nothing is trained)" in title, title


def test_trained_runs_with_the_same_results_keep_their_own_figures(trained_run, tmp_path):
    """Only what nothing trained shares figures: two seeds of a trained head keep a set each,
    even where their test results agree (their training curves differ)."""
    for seed in (1, 2):
        shutil.copytree(trained_run, tmp_path / "runs" / f"seed{seed}")
    runs = [load_run(p) for p in sorted((tmp_path / "runs").iterdir())]
    assert [len(s) for s in plots.figure_sets(runs)] == [1, 1]


def test_stage_two_curve_says_it_is_measured_on_videos_it_trains_on(trained_run, tmp_path, drawn):
    """Stage 1's validation HM is on held-out videos; stage 2's is on the stage-1 validation
    videos it trains on, and its axis, legend and panel title say so."""
    plots.write_plots(load_run(trained_run), tmp_path)
    training = drawn[-1]
    loss_axes = [ax for ax in training.fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in loss_axes] == ["Stage 1", "Stage 2"]
    stage1, stage2 = ([t.get_text() for t in ax.get_legend().get_texts()] for ax in loss_axes)
    assert any("held-out" in t for t in stage1) and not any("trains on" in t for t in stage1)
    assert any("which stage 2 trains on (not held out)" in t for t in stage2)
    twins = [ax.get_ylabel() for ax in training.fig.axes if not ax.get_title()]
    assert twins == ["validation HM (%)", "HM on its own training videos (%)"]
    assert "train + validation" in loss_axes[1].get_title()


MARK = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) img.setAttribute("data-loaded", img.naturalWidth > 0 ? "yes" : "no");
  document.body.setAttribute("data-checked", String(document.images.length));
});
</script>
</body>"""
"Added to a copy of the page: after load, marks each image by whether it decoded (naturalWidth 0: broken)"


def test_the_html_page_renders_in_chromium_with_every_figure_loaded(cli, trained_run, zeroshot_runs, tmp_path):
    """The standalone page of a trained head and a training-free one, opened in headless
    Chromium with no network: every embedded figure decodes (naturalWidth > 0)."""
    page = tmp_path / "report.html"
    r = cli("report", trained_run, zeroshot_runs, "-o", page)
    assert r.exit_code == 0, r
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html  # the page itself runs nothing; the check runs in a copy
    images = html.count("<img ")
    assert images == 1 + 3 + 2  # the comparison, the trained run's three, zeroshot's one set of two
    checked = tmp_path / "checked.html"
    checked.write_text(html.replace("</body>", MARK, 1), encoding="utf-8")
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [program(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    assert f'data-checked="{images}"' in dom, dom[-2000:]
    assert dom.count('data-loaded="yes"') == images and 'data-loaded="no"' not in dom
