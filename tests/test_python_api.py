"""The Python API (`clipclap_cli.api.open_store`, `load_model`) gives the numbers the commands
give, and docs/python-api.md's examples run as written.

- A stored dataset read through `open_store` holds what the store holds (each array against the
  store's own reads) and what a run reads (`load_protocol_data`), by plain names.
- Every `python` block of docs/python-api.md runs, in order, in one namespace, in a folder that
  holds what the page names (the demo store, the README's demo run, its exported model file).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clipclap_cli import api
from clipclap_cli.data.protocol_data import load_protocol_data
from clipclap_cli.errors import ClipclapError, StoreError
from clipclap_cli.store.feature_store import FeatureStore
from helpers import SMOKE_RUN
from media_files import write_video

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "python-api.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


# ---------------------------------------------------------------- a stored dataset as arrays

def test_a_stored_dataset_holds_what_the_store_and_a_run_read(demo_store):
    """Features, labels, ids, classes, label embeddings and split partitions equal the store's
    own checked reads and the tensors a run trains and evaluates on, under plain names."""
    store = api.open_store(demo_store)
    assert store.datasets() == ["demo"]
    data = store.dataset("demo")
    fs = FeatureStore(demo_store)
    ids, labels, _ = fs.read_videos("demo")
    assert data.ids.tolist() == ids.tolist() and data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.labels, labels)
    assert sorted(data.features) == ["audio", "video"] and sorted(data.label_embeddings) == ["clap", "clip"]
    for modality, values in data.features.items():
        assert values.dtype == np.float32 and values.shape[0] == len(ids)
        np.testing.assert_array_equal(values, fs.read_features("demo", modality))
    info = fs.info("demo")
    assert data.class_names == info["classes"] and data.prompt_names == info["prompt_names"]
    assert not any("~" in key for key in (*data.features, *data.label_embeddings, *data.splits))
    assert data.class_splits == info["class_splits"]
    assert sorted(data.class_splits["cls_split"]["stage_2_test_unseen"]) == \
        sorted(data.class_names[c] for c in data.classes("stage_2_test_unseen"))

    run_read = load_protocol_data(fs, "demo", "cls_split")  # what `train` and `evaluate` read
    np.testing.assert_array_equal(data.audio, run_read.audio.numpy())
    np.testing.assert_array_equal(data.video, run_read.video.numpy())
    np.testing.assert_array_equal(data.class_text(("clip", "clap")), run_read.class_text.numpy())
    np.testing.assert_array_equal(data.labels, run_read.labels.numpy())
    split = data.split()  # the only split: the demo's cls_split
    assert split.name == "cls_split" and split.how["method"] == "class-split folder"
    for partition in api.PARTITIONS:
        np.testing.assert_array_equal(data.partition(partition), run_read.indices[partition].numpy())
    np.testing.assert_array_equal(data.partition("stage_2_train"), run_read.sets.train[2].videos.numpy())
    for stage, ids_ in run_read.classes.items():
        np.testing.assert_array_equal(data.classes(stage), ids_.numpy())
    test_seen = data.partition("stage_2_test_seen")
    assert set(data.labels[test_seen]) <= set(data.classes("stage_2_test_seen"))


def test_reading_a_store_imports_no_torch(demo_store):
    """What the page promises a notebook that only reads data: no torch import, as for `clipclap --help`."""
    code = ("import sys; from clipclap_cli.api import open_store; "
            f"open_store({str(demo_store)!r}).dataset('demo'); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout == "False\n"


def test_a_store_s_bad_names_and_damage_are_one_line(demo_copy):
    store = api.open_store(demo_copy)
    data = store.dataset()  # the store's only dataset
    for call, says in [(lambda: data.partition("stage_3"), "no partition 'stage_3' in split 'cls_split'"),
                       (lambda: data.split("drawn"), "has no split 'drawn'; it has: cls_split"),
                       (lambda: data.classes("test"), "no class set 'test'"),
                       (lambda: store.dataset("ucf"), "dataset 'ucf' is not in the store")]:
        with pytest.raises(ClipclapError, match=re.escape(says)) as caught:
            call()
        assert "\n" not in str(caught.value)
    [chunk] = Path(demo_copy).glob("demo~*/features/audio*/c/0/0")
    damaged = bytearray(chunk.read_bytes())
    damaged[100] ^= 0x01
    chunk.write_bytes(bytes(damaged))
    with pytest.raises(StoreError, match=r"dataset 'demo' in .*: features/audio is damaged") as caught:
        store.dataset("demo")
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- a trained model

def _accuracy_per_class(labels: list[str], predicted: list[str]) -> dict[str, float]:
    """Each class's share of its videos predicted as it, in float32 as evaluation computes it."""
    out = {}
    for name in sorted(set(labels)):
        hits = [p == name for label, p in zip(labels, predicted, strict=True) if label == name]
        out[name] = float(np.float32(sum(hits)) / np.float32(len(hits)))
    return out


def test_predictions_decide_as_evaluate_did(trained_run, demo_store):
    """The first class of each row over the run's test partitions is evaluation's decision:
    every class's accuracy at beta* and every unseen class's ZSL recall (the best unseen column
    of `scores`) equal results.json's, which evaluation computed on its own."""
    model = api.load_model(trained_run, store=api.open_store(demo_store))  # the store given, not the recorded one
    results = json.loads((trained_run / "results.json").read_text())
    assert model.beta == results["beta_star"] and model.classes == api.open_store(demo_store).dataset().class_names
    assert len(model.seen) == results["classes"]["seen"]
    rows = model.predict_dataset(demo_store, "demo", top_k=1)
    labels, first = [r["label"] for r in rows], [r["predictions"][0]["class"] for r in rows]
    expected = {**results["per_class_accuracy"]["seen"], **results["per_class_accuracy"]["unseen"]}
    assert _accuracy_per_class(labels, first) == pytest.approx(expected, abs=1e-7)

    data = api.open_store(demo_store).dataset("demo")
    test = np.concatenate([data.partition("stage_2_test_seen"), data.partition("stage_2_test_unseen")])
    assert [r["id"] for r in rows] == data.ids[test].tolist()
    scores = model.scores(data.audio[test], data.video[test])
    assert scores.shape == (len(test), len(model.classes)) and scores.dtype == np.float32
    unseen = [c for c, name in enumerate(model.classes) if name not in model.seen]
    best_new = [model.classes[unseen[i]] for i in scores[:, unseen].argmax(axis=1)]
    zsl = _accuracy_per_class(labels, best_new)
    assert {n: zsl[n] for n in results["zsl_per_class_recall"]} == pytest.approx(results["zsl_per_class_recall"],
                                                                                  abs=1e-7)


def test_the_rows_are_the_rows_predict_writes(trained_run, demo_store, cli):
    """`predict_dataset`'s rows are `clipclap predict --format json`'s, value for value; the rows
    of the same features given as arrays are those rows without the labels."""
    model = api.load_model(trained_run)
    r = cli("predict", trained_run, "--dataset", "demo", "--partition", "stage_2_test_unseen", "-k", "3",
            "--format", "json")
    assert r.exit_code == 0, r
    rows = model.predict_dataset(demo_store, partition="stage_2_test_unseen", top_k=3)
    assert rows == json.loads(r.stdout)
    data = api.open_store(demo_store).dataset("demo")
    unseen = data.partition("stage_2_test_unseen")
    from_arrays = model.predict(torch.from_numpy(data.audio[unseen]), data.video[unseen], top_k=3, ids=data.ids[unseen])
    assert from_arrays == [{k: v for k, v in row.items() if k != "label"} for row in rows]


def test_what_cannot_be_done_is_one_line(trained_run, demo_store):
    model = api.load_model(trained_run)
    audio, video = np.zeros((3, 1024), np.float32), np.zeros((3, 512), np.float32)
    for call, says in [
        (lambda: model.predict(video, video), "audio: expected an array of shape (N, 1024), got (3, 512)"),
        (lambda: model.predict(audio, video[:2]), "audio has 3 rows and video 2"),
        (lambda: model.predict(audio * np.nan, video), "audio: holds NaN"),
        (lambda: model.predict(audio, video, ids=["a"]), "1 ids for 3 samples"),
        (lambda: model.predict(audio, video, top_k=0), "top_k=0"),
        (lambda: model.predict(audio, video, classes=["dog", "Dog "]), "is the same name as 'dog' (classes[0])"),
        (lambda: model.predict(audio, video, classes=["dog", " "]), "classes[1] is empty"),
        (lambda: model.predict(audio, video, classes=["dog"]), "among two or more"),
        (lambda: model.predict(audio, video, classes="dog,cat"), "a list of names, not one string"),
        (lambda: model.predict_dataset(demo_store, partition="test"), "--partition 'test'"),
        (lambda: api.load_model(head="trained"), "only 'zeroshot'"),
        (lambda: api.load_model(), "give the path of a run folder"),
        (lambda: api.load_model(head="zeroshot", dataset="demo"), "give the store that holds it too"),
        (lambda: api.load_model(head="zeroshot").predict(np.zeros((1, 1024)), np.zeros((1, 512))),
         "has no classes of its own: give `classes`"),
        (lambda: model.predict_videos([]), "no videos given"),
    ]:
        with pytest.raises(ClipclapError, match=re.escape(says)) as caught:
            call()
        assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- the page's examples run

#: The files the page's videos section names beside the videos: the dataset's entry, its
#: prompt templates, and a vocabulary for the tiny CLAP text branch (no download)
MINE_TOML = """[datasets.mine]
kind = "video-folder"
prompts = "prompts.toml"
dims = { video = 32, audio = 32, clip = 32, clap = 32 }
"""
PROMPTS_TOML = """[clip_text]
templates = ["a photo of {}."]
[clap_text]
templates = ["the sound of {}."]
"""
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "of", "photo", "sound", ".", "arch", "##ery",
         "drum", "##ming", "row", "##ing"]


@pytest.fixture
def page_folder(tmp_path, monkeypatch, demo_store, trained_run):
    """A folder holding what the page names: the demo store, the README's demo run, and a
    folder per class of generated videos with the files that describe them, new videos (one of
    them broken)."""
    (tmp_path / "clipclap.zarr").symlink_to(demo_store, target_is_directory=True)
    run = tmp_path / "runs" / "demo" / SMOKE_RUN / "seed42"
    run.parent.mkdir(parents=True)
    run.symlink_to(trained_run, target_is_directory=True)
    for ci, name in enumerate(["Archery", "Drumming"]):
        (tmp_path / "videos" / name).mkdir(parents=True)
        for k in range(2):
            write_video(tmp_path / "videos" / name / f"clip{k}.mp4", seconds=1, channel=ci,
                        freq=300 + 200 * ci + 40 * k)
    (tmp_path / "new").mkdir()
    for k in range(2):
        write_video(tmp_path / "new" / f"v{k}.mp4", seconds=1, channel=2 - k, freq=350 + 150 * k)
    (tmp_path / "new" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 40)
    (tmp_path / "mine.toml").write_text(MINE_TOML)
    (tmp_path / "prompts.toml").write_text(PROMPTS_TOML)
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_example_of_the_page_runs_as_written(page_folder, cli):
    """Every `python` block runs, in order, in one namespace; every `clipclap` line of a `bash`
    block runs through the CLI (exit 0) where it stands among them."""
    blocks = [(m.group(1), m.group(2), PAGE.read_text()[:m.start()].count("\n") + 1)
              for m in FENCE.finditer(PAGE.read_text())]
    assert {lang for lang, _, _ in blocks} <= {"python", "bash"} and sum(lang == "python" for lang, _, _ in blocks) >= 5
    namespace: dict = {"__name__": "python_api_page"}
    for lang, code, line in blocks:
        if lang == "python":
            exec(compile("\n" * line + code, str(PAGE), "exec"), namespace)
            continue
        for command in [shlex.split(c, comments=True) for c in code.splitlines()]:
            if command:
                assert command[0] == "clipclap", f"{PAGE.name}:{line}: {command}"
                r = cli(*command[1:])
                assert r.exit_code == 0, (f"{PAGE.name}:{line}", r)

    # the page's zero-shot model scores a dataset's videos as their features stored by `extract`
    zeroshot = namespace["zeroshot"]
    mine = api.open_store("videos.zarr").dataset("mine")
    rows = zeroshot.predict_videos([Path("videos", f"{i}.mp4") for i in mine.ids], top_k=2)
    assert [row["id"] for row in rows] == mine.ids.tolist()
    scores = zeroshot.scores(mine.audio, mine.video)
    for row, expected in zip(rows, scores, strict=True):
        by_class = {p["class"]: p["score"] for p in row["predictions"]}
        assert by_class == pytest.approx(dict(zip(zeroshot.classes, expected.tolist(), strict=True)), abs=1e-4)
    [broken] = [row for row in zeroshot.predict_videos(namespace["new"]) if "error" in row]
    assert broken["id"] == "broken" and broken["predictions"] == []
