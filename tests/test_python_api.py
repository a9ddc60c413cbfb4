"""The Python API (`clipclap_cli.api.open_store`, `load_model`) gives the numbers the commands
give, and docs/python-api.md's examples run as written.

- A stored dataset read through `open_store` holds what the store holds (each array against the
  store's own reads) and what a run reads (`load_protocol_data`), by plain names.
- Every `python` block of docs/python-api.md runs, in order, in one namespace, in a folder that
  holds what the page names (the demo store, the README's demo run, its exported model file).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from clipclap_cli import api
from clipclap_cli.data.protocol_data import load_protocol_data
from clipclap_cli.errors import ClipclapError, StoreError
from clipclap_cli.store.feature_store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "python-api.md"


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
