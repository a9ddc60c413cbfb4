"""What `predict` is given beside a model: class names (read, checked, embedded by the model's
text encoders), the user's own videos (encoded as the model's features were) and the
training-free zeroshot head. Offline: tiny random-weight CLIP and CLAP (the CLAP text branch
with a tokenizer vocabulary written here), generated videos, one of them broken."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil

import numpy as np
import pytest
import torch

from clipclap_cli.cli import run
from clipclap_cli.errors import ClipclapError
from clipclap_cli.plugins.manager import make_plugin_manager
from clipclap_cli.store.feature_store import FeatureStore
from helpers import SMOKE, tree_digest
from media_files import write_video

# one worker runs the module: every test reads the dataset and run of `made` (extracted, embedded
# and trained once) and some add files beside them
pytestmark = pytest.mark.xdist_group("predict-inputs")

CLASSES = ("Archery", "Drumming", "Fencing", "Rowing")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "of", "photo", "video", "sound", "is", "this",
         ".", "can", "be", "heard", "arch", "##ery", "drum", "##ming", "fen", "##cing", "row", "##ing", "ska",
         "##ting", "bell", "##s"]
PROMPTS = """[clip_text]
templates = ["a photo of {}.", "a video of {}."]
[clap_text]
templates = ["the sound of {}.", "{} can be heard."]
"""
DATASETS = """[datasets.mine]
display_name = "Generated videos"
kind = "video-folder"
split = "drawn"
prompts = "{root}/prompts.toml"
dims = { video = 32, audio = 32, clip = 32, clap = 32 }
"""


def _clipclap(*args) -> None:
    assert run([str(a) for a in args], make_plugin_manager(entrypoints=False)) == 0, args


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A dataset extracted from generated videos with the tiny encoders (4 classes x 6), split,
    both label embeddings computed from a prompts file, one short run trained and evaluated on
    it; and a folder of new videos (flat, one of them broken)."""
    root = tmp_path_factory.mktemp("inputs")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    (root / "prompts.toml").write_text(PROMPTS)
    (root / "datasets.toml").write_text(DATASETS.replace("{root}", root.as_posix()))
    for ci, name in enumerate(CLASSES):
        (root / "videos" / name).mkdir(parents=True)
        for k in range(6):
            write_video(root / "videos" / name / f"clip{k}.mp4", seconds=1, channel=ci % 3,
                        freq=300 + 200 * ci + 40 * k)
    new = root / "new"
    new.mkdir()
    for k in range(3):
        write_video(new / f"v{k}.mp4", seconds=1, channel=k, freq=350 + 150 * k)
    (new / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 40)
    where = ("--store", root / "s.zarr", "--datasets", root / "datasets.toml")
    _clipclap("extract", "mine", "--videos", root / "videos", "-e", "clip:model=clipclap-tiny-clip",
              "-e", "clap:size=tiny", "-e", f"clap:vocab={vocab}", "--workers", 0, *where)
    _clipclap("split", "mine", "--split", "drawn", "--seen", 3, "--unseen", 1, "--val-unseen", 1, *where)
    _clipclap("embed", "mine", "--encoder", "clip", "-e", "model=clipclap-tiny-clip", *where)
    _clipclap("embed", "mine", "--encoder", "clap", "-e", "size=tiny", "-e", f"vocab={vocab}", *where)
    _clipclap("train", "mine", *SMOKE, "--runs-dir", root / "runs", *where)
    [run_dir] = [p.parent for p in (root / "runs").rglob("results.json")]
    return {"root": root, "store": root / "s.zarr", "run": run_dir, "new": new, "vocab": vocab}


@pytest.fixture(scope="module")
def model(made):
    from clipclap_cli.runs.trained import load_trained

    return load_trained(made["run"], make_plugin_manager(entrypoints=False))


# ---------------------------------------------------------------- class names

@pytest.mark.parametrize("text,message", [
    ("a,,b", "name 2 of --classes 'a,,b' is empty: every class needs a name"),
    ("a,b, ", "name 3 of --classes 'a,b, ' is empty"),
    ("dog,cat,dog", "class 'dog' (name 3 of --classes 'dog,cat,dog') is given twice: each class once"),
    ("Dog,cat,dog", "class 'dog' (name 3 of --classes 'Dog,cat,dog') is the same name as 'Dog' (name 1 of"),
    ("playing  guitar,playing guitar", "is the same name as 'playing  guitar'"),
    ("dog", "only one class ('dog'): a prediction picks among two or more"),
])
def test_bad_class_names_are_refused_in_one_line_naming_the_culprit(text, message):
    from clipclap_cli.predict.classes import ClassNamesError, read_class_names

    with pytest.raises(ClassNamesError) as e:
        read_class_names(text, None)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_class_names_from_the_option_or_a_file(tmp_path):
    from clipclap_cli.predict.classes import ClassNamesError, checked_class_names, read_class_names

    assert read_class_names(None, None) is None
    assert read_class_names(" playing guitar , dog barking,cat", None) == ["playing guitar", "dog barking", "cat"]
    good = tmp_path / "good.txt"
    good.write_text("playing guitar\n dog barking \ncat\n\n\n")  # blank lines at the end are no names
    assert read_class_names(None, good) == ["playing guitar", "dog barking", "cat"]
    for text, message in (("a\n\nb\n", "line 2 of"), ("a\nb\na\n", "class 'a' (line 3 of"), ("a\n", "only one class"),
                          ("\n\n", "names no classes")):
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(ClassNamesError, match=re.escape(message)):
            read_class_names(None, bad)
    with pytest.raises(ClassNamesError, match="no such file"):
        read_class_names(None, tmp_path / "missing.txt")
    with pytest.raises(ClassNamesError, match="give the class names one way"):
        read_class_names("a,b", good)
    assert checked_class_names([" dog", "cat "]) == ["dog", "cat"]  # a list, as the Python API takes them
    twice = "class 'DOG' (classes[2]) is the same name as 'dog' (classes[0])"
    with pytest.raises(ClassNamesError, match=re.escape(twice)):
        checked_class_names(["dog", "cat", "DOG"])
    with pytest.raises(ClassNamesError, match="no classes: a prediction picks among two or more"):
        checked_class_names([])


def test_a_dataset_class_embedded_here_equals_its_stored_label_embedding(made, model):
    """The same text encoders (rebuilt from the features' record), templates and pooling as
    `clipclap embed`: the dataset's own class names give back its stored rows, bit for bit;
    other templates (--prompts) give other rows."""
    from clipclap_cli.predict.classes import embed_class_names

    pm = make_plugin_manager(entrypoints=False)
    again = embed_class_names(model, model.prompt_names, None, pm)
    stored = np.concatenate([FeatureStore(made["store"]).read_label_embeddings("mine", p) for p in ("clip", "clap")], 1)
    assert again.shape == (4, 64) and torch.equal(again, torch.from_numpy(stored))
    assert torch.equal(again, model.class_text)
    same = made["root"] / "same.toml"
    same.write_text(PROMPTS)
    assert torch.equal(embed_class_names(model, ["Rowing", "Archery"], same, pm), again[[3, 0]])
    other = made["root"] / "other.toml"
    other.write_text(PROMPTS.replace("a photo of {}.", "this is {}."))
    moved = embed_class_names(model, ["Rowing", "Archery"], other, pm)
    assert not torch.allclose(moved[:, :32], again[[3, 0], :32]) and torch.equal(moved[:, 32:], again[[3, 0], 32:])


def test_text_encoders_that_do_not_give_back_the_model_s_label_embeddings_are_refused(model):
    """Other weights (here: the model's label embeddings moved), an encoder not installed, a part
    without templates: one line each, before any new name is embedded."""
    from clipclap_cli.plugins.encoder_records import EncoderRecordError
    from clipclap_cli.predict.classes import ClassNamesError, embed_class_names

    pm = make_plugin_manager(entrypoints=False)
    moved = copy.copy(model)
    moved.class_text = model.class_text + 0.01
    with pytest.raises(ClassNamesError, match=r"the clip text encoder here does not give the model's own label "
                                              r"embedding of 'Archery' \(off by 0.01\)"):
        embed_class_names(moved, ["bells", "skating"], None, pm)
    gone = copy.copy(model)
    gone.features = copy.deepcopy(model.features)
    gone.features["video"]["encoder"] = "clip-large"
    gone.spec = dataclasses.replace(model.spec, dims={**model.spec.dims, "text_parts": [["clip-large", 32]]})
    with pytest.raises(EncoderRecordError, match="encoder 'clip-large', which is not installed here"):
        embed_class_names(gone, ["bells", "skating"], None, pm)
    bare = copy.copy(model)
    bare.templates = {}
    with pytest.raises(ClassNamesError, match=r"no prompt templates for its clip label embeddings .* pass --prompts"):
        embed_class_names(bare, ["bells", "skating"], None, pm)


# ---------------------------------------------------------------- videos

def test_features_of_videos_are_those_extract_stored_and_a_broken_video_is_reported(made, model):
    """The same decoding and encoding as `extract`, with the encoders and frame recipe the
    model's provenance records: bit-identical features; a file that does not decode is reported
    by id with its reason and the others go on."""
    from clipclap_cli.extract.video_features import features_of_videos, video_files

    pm = make_plugin_manager(entrypoints=False)
    paths = video_files(made["root"] / "videos")
    assert len(paths) == 24
    broken = made["root"] / "videos" / "Drumming" / "zz_broken.mp4"
    shutil.copy(made["new"] / "broken.mp4", broken)
    try:
        ids, audio, video, failed = features_of_videos([*paths, broken], model.features, pm)
    finally:
        broken.unlink()
    fs = FeatureStore(made["store"])
    stored = [str(i) for i in fs.read_videos("mine")[0]]
    assert ids == stored and ids[0] == "Archery/clip0"  # ids as the video-folder format names them
    assert torch.equal(audio, torch.from_numpy(fs.read_features("mine", "audio")))
    assert torch.equal(video, torch.from_numpy(fs.read_features("mine", "video")))
    assert list(failed) == ["Drumming/zz_broken"] and failed["Drumming/zz_broken"].startswith("unreadable container")


def test_videos_with_encoders_not_installed_or_other_weights_are_refused(made, model):
    from clipclap_cli.extract.video_features import VideoFeaturesError, features_of_videos
    from clipclap_cli.plugins.encoder_records import EncoderRecordError

    pm = make_plugin_manager(entrypoints=False)
    paths = sorted(made["new"].glob("v*.mp4"))
    cases = [("audio", "encoder", "my-clap", EncoderRecordError,
              r"^the model's audio features come from encoder 'my-clap', which is not installed here \(installed: "),
             ("video", "model", "ViT-B-32-quickgelu", ClipclapError, "CLIP ViT-B-32-quickgelu has no weights"),
             ("video", "random_weights", False, VideoFeaturesError,
              r"the clip encoder here is not the one that made the model's video features \(random_weights False "
              r"recorded, True here\)"),
             ("audio", "audio", {"sample_rate": 16000}, VideoFeaturesError, "audio features were taken as")]
    for modality, key, value, error, message in cases:
        features = copy.deepcopy(model.features)
        features[modality][key] = value
        if key == "model":
            features[modality]["params"]["model"] = value
        with pytest.raises(error, match=message) as e:
            features_of_videos(paths, features, pm)
        assert "\n" not in str(e.value)
    imported = {"video": {}, "audio": {}}
    with pytest.raises(VideoFeaturesError, match=r"name no encoder .* trained on features from `clipclap extract`"):
        features_of_videos(paths, imported, pm)


def test_video_ids_are_paths_below_the_common_folder(tmp_path):
    from clipclap_cli.extract.video_features import VideoFeaturesError, video_files, video_ids

    assert video_ids([tmp_path / "a" / "x.mp4", tmp_path / "b" / "x.mp4"]) == ["a/x", "b/x"]
    assert video_ids([tmp_path / "x.mp4", tmp_path / "x.avi", tmp_path / "y.mkv"]) == ["x.mp4", "x.avi", "y"]
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(VideoFeaturesError, match="no videos"):
        video_files(tmp_path)


# ---------------------------------------------------------------- zeroshot head

def test_the_zeroshot_head_as_a_model_on_a_dataset_and_on_the_built_in_encoders(made, model):
    from clipclap_cli.predict.zeroshot import DEFAULT_TEMPLATES, zeroshot_model

    pm = make_plugin_manager(entrypoints=False)
    fs = FeatureStore(made["store"])
    on = zeroshot_model(pm, fs, "mine")
    assert on.beta == 0 and on.seen == [] and on.class_names == list(CLASSES) and on.spec.split == "drawn"
    assert torch.equal(on.class_text, model.class_text) and on.features == model.features
    assert on.templates == model.templates and on.results is None and not on.head.training
    bare = zeroshot_model(pm, encoder_params={"clip": ["model=clipclap-tiny-clip"], "clap": ["size=tiny"]})
    assert bare.class_names == [] and bare.class_text.shape == (0, 64) and bare.templates == DEFAULT_TEMPLATES
    assert bare.spec.dims == {"audio": 32, "video": 32, "text_parts": [["clip", 32], ["clap", 32]]}
    assert bare.features["video"]["frame_recipe"]["name"] == "clean" and bare.features["audio"]["encoder"] == "clap"
    with pytest.raises(ClipclapError, match="encodes with clip and clap"):
        zeroshot_model(pm, encoder_params={"imagebind": ["x=1"]})


# ---------------------------------------------------------------- end to end

def test_a_trained_model_names_new_videos_with_new_class_names(made, model, cli, tmp_path):
    """`predict RUN --videos DIR --classes ...`: one row per video, best first, each class seen
    (trained on: β applies) or new; the broken video in its row; the scores those of the model's
    head on the videos' features and the names' label embeddings."""
    from clipclap_cli.extract.video_features import features_of_videos
    from clipclap_cli.predict.classes import embed_class_names

    pm = make_plugin_manager(entrypoints=False)
    out = tmp_path / "p.json"
    names = ["Rowing", "skating", "Archery", "bells"]
    r = cli("predict", made["run"], "--videos", made["new"], "--classes", ",".join(names), "--top-k", 4, "-o", out)
    assert r.exit_code == 0, r
    video_encoder, audio_encoder = (model.features[m]["encoder"] for m in ("video", "audio"))
    assert r.stderr.startswith(f"reading 4 videos: loading models ({video_encoder} for video, "
                               f"{audio_encoder} for audio)"), r.stderr  # said before the models load
    rows = json.loads(out.read_text())
    assert [row["id"] for row in rows] == ["v0", "v1", "v2", "broken"]
    assert rows[3]["predictions"] == [] and rows[3]["error"].startswith("unreadable container")
    _, audio, video, _ = features_of_videos(sorted(made["new"].glob("v*.mp4")), model.features, pm)
    text = embed_class_names(model, names, None, pm)
    seen = torch.tensor([n in model.seen for n in names])
    with torch.no_grad():
        expected = -(model.head.distances(audio, video, text)["both"] + model.beta * seen)
    for row, want in zip(rows[:3], expected, strict=True):
        got = [p["score"] for p in row["predictions"]]
        assert got == sorted(got, reverse=True) and len(got) == 4
        for p in row["predictions"]:
            assert p["seen"] == (p["class"] in model.seen)
            assert p["score"] == pytest.approx(float(want[names.index(p["class"])]), abs=1e-5)
    assert {"skating", "bells"}.isdisjoint(model.seen) and any(n in model.seen for n in names)


def test_the_zeroshot_head_names_videos_without_training(made, cli, tmp_path):
    out = tmp_path / "z.csv"
    r = cli("predict", "--head", "zeroshot", "--videos", made["new"], "--classes", "rowing,skating,bells",
            "-e", "clip:model=clipclap-tiny-clip", "-e", "clap:size=tiny", "-e", f"clap:vocab={made['vocab']}",
            "--top-k", 2, "-o", out)
    assert r.exit_code == 0, r
    lines = out.read_text().splitlines()
    assert len(lines) > 3 and "broken" in out.read_text()
    names = tmp_path / "names.txt"
    names.write_text("rowing\nskating\n")
    on_dataset = cli("predict", "--head", "zeroshot", "--dataset", "mine", "--store", made["store"], "--videos",
                     made["new"], "--classes-file", names, "--prompts", made["root"] / "prompts.toml",
                     "--format", "json")
    assert on_dataset.exit_code == 0, on_dataset
    rows = json.loads(on_dataset.stdout)
    assert len(rows) == 4 and all(p["seen"] is False for row in rows for p in row["predictions"])
    assert {p["class"] for p in rows[0]["predictions"]} == {"rowing", "skating"}


@pytest.mark.parametrize("extra,message", [
    (("--classes", "rowing,,bells"), "name 2 of --classes 'rowing,,bells' is empty"),
    (("--classes", "rowing,bells,Rowing"), "is the same name as 'rowing'"),
    (("--classes", "rowing"), "only one class"),
    (("--classes", "rowing,bells", "-e", "clip:model=clipclap-tiny-clip"), "-e sets the encoders of --head zeroshot"),
])
def test_bad_class_names_on_the_command_line_write_nothing(made, cli, tmp_path, extra, message):
    out = tmp_path / "p.json"
    before = tree_digest(made["store"])
    r = cli("predict", made["run"], "--videos", made["new"], *extra, "-o", out)
    assert r.exit_code == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and tree_digest(made["store"]) == before
