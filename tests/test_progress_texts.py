"""What training and extraction print while they work (issue 43, point 8): a training-free head
says it has nothing to train (no bar counting batches it never draws, no "epoch 2/1"); a bar never
names an epoch past its stage's last; a progress line without a terminal never carries the loss
and HM of the epoch before; "1 epoch", not "1 epochs"; `extract` says the models load before they
do. The training events are the real ones (a zeroshot run, which only validates, and the epochs
the session's `tiny_run` recorded), drawn by `cli/progress.py` as a log file would see them."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from rich.console import Console

from clipclap_cli.cli import console, progress
from clipclap_cli.data.datasets_toml import load_catalog
from clipclap_cli.runs.config import load_spec
from clipclap_cli.runs.plan import RunRequest
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.train.launchers import InProcess
from clipclap_cli.train.scheduler import (
    Epoch,
    Finished,
    Launched,
    Planned,
    Reused,
    Started,
    Step,
    planned,
    schedule,
)
from helpers import register_plugin

# a progress line of the batches bar, as LoggedProgress writes it: "stage 1 epoch 2/3: 1/2, ..."
BAR_LINE = re.compile(r"^(?:\S.*: )?stage (\d) epoch (\d+)(?:/(\d+))?: (\d+)/(\d+), ")


def _drawn(monkeypatch, events, stages=(1, 2)) -> tuple[list[str], list[list[tuple]]]:
    """`events` drawn without a terminal, a progress line at every change: the lines written, and
    after each event the bar's tasks that a terminal would show (description, done, total)."""
    text = io.StringIO()
    sink = Console(file=text, force_terminal=False, highlight=False, soft_wrap=True, width=400)
    monkeypatch.setattr(console, "err", sink)
    monkeypatch.setattr(progress, "err", sink)
    monkeypatch.setenv("CLIPCLAP_PROGRESS_SECONDS", "0")
    shown = []
    with progress.TrainingProgress(stages) as show:
        for event in events:
            show(event)
            shown.append([] if show.bar is None else
                         [(t.description, t.completed, t.total) for t in show.bar.tasks if t.visible])
    return text.getvalue().splitlines(), shown


def _scheduled(pm, demo_store, runs, head: str) -> list:
    store = FeatureStore(str(demo_store))
    plan = planned(store, load_catalog(pm, None).get("demo"), RunRequest(heads=(head,)), runs, pm=pm).plan
    events = []
    schedule(plan, store, (1, 2), InProcess(), pm, None, events.append).check()
    return events


def test_a_training_free_head_says_it_has_nothing_to_train(pm, demo_store, tmp_path, monkeypatch):
    events = _scheduled(pm, demo_store, tmp_path, "zeroshot")
    path = events[0].plan[0][0]
    assert [(e.stage, e.epochs, e.batches) for e in events if isinstance(e, Started)] == [(1, 1, 0), (2, 1, 0)]
    assert not any(isinstance(e, Step) for e in events)
    lines, shown = _drawn(monkeypatch, events)
    hm = [json.loads((path / f"stage{s}" / "metrics.jsonl").read_text())["val"]["hm"] for s in (1, 2)]
    assert lines == [f"zeroshot on demo (seed 42) -> {path}",
                     f"stage 1: nothing to train (training-free head), val HM {100 * hm[0]:.2f}",
                     f"stage 2: nothing to train (training-free head), val HM {100 * hm[1]:.2f}",
                     f"test: {console.test_figures(events[-1].results)} -> {path / 'results.json'}"]
    assert shown == [[]] * len(events)  # no bar: there are no batches to count
    # again: both stages reused, one epoch each, said in the singular
    lines, _ = _drawn(monkeypatch, _scheduled(pm, demo_store, tmp_path, "zeroshot"))
    assert "stage 1: already trained (1 epoch, best epoch 1)" in lines
    assert "stage 2: already trained (1 epoch)" in lines


def test_epoch_bars_and_lines_of_a_trained_head(tiny_run, monkeypatch):
    """`tiny_run`'s recorded epochs (2 epochs of 2 batches a stage), as its training emitted them:
    each batch line names its own epoch and nothing of the epoch before; each epoch's line its
    loss and HM; no bar counts an epoch past the stage's last."""
    spec, _ = load_spec(tiny_run)
    records = {s: [json.loads(line) for line in (tiny_run / f"stage{s}" / "metrics.jsonl").read_text().splitlines()]
               for s in (1, 2)}
    assert [len(r) for r in records.values()] == [2, 2] and spec.train.batches_per_epoch == 2
    events = [Planned([(tiny_run, spec)]), Launched((0,))]
    for stage, epochs in records.items():
        events.append(Started(0, stage, 0, len(epochs), 2))
        for record in epochs:
            events += [Step(0, 1), Step(0, 2), Epoch(0, stage, record)]
    events.append(Finished(0, json.loads((tiny_run / "results.json").read_text())))
    lines, shown = _drawn(monkeypatch, events)

    bar = [m.groups() for m in map(BAR_LINE.match, lines) if m]
    expected = [(str(s), str(e), "2", str(b), "2") for s in (1, 2) for e in (1, 2) for b in (1, 2)]
    assert bar == expected  # the final state, 2/2 of the last epoch, was written already
    for line in lines:
        if BAR_LINE.match(line):
            assert "loss" not in line and "HM" not in line, line
    epoch_lines = [line for line in lines if not BAR_LINE.match(line) and " epoch " in line]
    assert epoch_lines == [f"stage {s} epoch {r['epoch']}/2: loss {r['losses']['total']:.4f}  "
                           f"val HM {100 * r['val']['hm']:.2f}  best epoch {r['best_epoch']}"
                           for s, rs in records.items() for r in rs]
    for tasks in shown:  # what a terminal's bar showed after each event
        for description, done, total in tasks:
            stage, epoch, of = map(int, re.fullmatch(r"stage (\d) epoch (\d+)/(\d+)", description).groups())
            assert epoch <= of == 2 and done <= total == 2, tasks
    assert shown[-2] == [("stage 2 epoch 2/2", 2, 2)]  # the stage's last epoch stays as it ended


@pytest.mark.parametrize("epochs, said", [(1, "1 epoch"), (2, "2 epochs"), (0, "0 epochs")])
def test_already_trained_counts_its_epochs(trained_run, monkeypatch, epochs, said):
    spec, _ = load_spec(trained_run)
    events = [Planned([(trained_run, spec)]), Launched((0,)),
              Reused(0, 1, {"epochs": epochs, "best_epoch": epochs}), Reused(0, 2, {"epochs": epochs})]
    lines, _ = _drawn(monkeypatch, events)
    assert f"stage 1: already trained ({said}, best epoch {epochs})" in lines
    assert f"stage 2: already trained ({said})" in lines


def test_extract_says_the_models_load_before_they_do(cli, pm, tmp_path, capsys):
    """Piped, `extract` is silent while its encoders load their weights (tens of seconds for CLIP
    and CLAP): a line says so first. The encoders here write when their (first) batch comes."""
    from dataclasses import dataclass

    from clipclap_cli import Encoder
    from media_files import write_video

    @dataclass(frozen=True)
    class NoParams:
        pass

    class Loud(Encoder):
        encoder_id, modality, dim, Params = "loud-video", "video", 3, NoParams

        def encode_batch(self, items):
            import sys

            print(f"{self.encoder_id} encodes {len(items)}", file=sys.stderr)
            return np.ones((len(items), self.dim), np.float32)

    class LoudAudio(Loud):
        encoder_id, modality, dim = "loud-audio", "audio", 1

    register_plugin(pm, "loud-encoders", encoders=[Loud(), LoudAudio()])
    for cls in ("Archery", "Drumming"):
        (tmp_path / "v" / cls).mkdir(parents=True)
        write_video(tmp_path / "v" / cls / "a.mp4", seconds=0.5)
    datasets = tmp_path / "datasets.toml"
    datasets.write_text('[datasets.mine]\nkind = "video-folder"\nsplit = "drawn"\n'
                        "dims = { video = 3, audio = 1, clip = 32, clap = 32 }\n")
    r = cli("extract", "mine", "--videos", tmp_path / "v", "--datasets", datasets, "--store", tmp_path / "s.zarr",
            "--video-encoder", "loud-video", "--audio-encoder", "loud-audio", "--workers", "0")
    assert r.exit_code == 0, r
    lines = r.stderr.splitlines()
    loading = [i for i, line in enumerate(lines) if "loading models" in line]
    assert len(loading) == 1, r.stderr
    assert lines[loading[0]].startswith("extract mine: 0/2, ")
    assert lines[loading[0]].endswith("loading models (loud-video for video, loud-audio for audio, on cpu) "
                                      "with the first videos")
    assert loading[0] < lines.index("loud-video encodes 2") < lines.index("loud-audio encodes 2")
    assert any(line.startswith("extract mine: 2/2, ") for line in lines[loading[0]:])
    # nothing left to do: no models load, and no line says they do
    again = cli("extract", "mine", "--videos", tmp_path / "v", "--datasets", datasets, "--store",
                tmp_path / "s.zarr", "--video-encoder", "loud-video", "--audio-encoder", "loud-audio")
    assert again.exit_code == 0 and "loading models" not in again.stderr and "encodes" not in again.stderr, again
