"""`clipclap split`: class-split folders and drawn splits, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from clipclap_cli.data.splits import draw_split
from clipclap_cli.store.feature_store import FeatureStore
from helpers import tree_digest


def test_demo_split_has_ucf_structure(demo_copy):
    fs = FeatureStore(demo_copy)
    split = fs.read_split("demo", "cls_split")
    c = split.classes
    assert (len(c["stage_1_train"]), len(c["stage_1_val_unseen"]), len(c["stage_2_test_unseen"])) == (30, 12, 6)
    assert sorted(c["stage_1_train"] + c["stage_1_val_unseen"]) == c["stage_2_train"]
    _, labels, _ = fs.read_videos("demo")
    for part, idx in split.indices.items():
        stage_classes = c[part]
        assert set(np.unique(labels[idx])) == set(stage_classes), part
    all_idx = np.concatenate(list(split.indices.values()))
    assert len(all_idx) == len(np.unique(all_idx)) == len(labels)


def test_rewrite_split_from_stored_class_lists(cli, demo_copy):
    before = FeatureStore(demo_copy).read_split("demo", "cls_split").indices
    r = cli("split", "demo", "--store", demo_copy)
    assert r.exit_code == 0, r
    after = FeatureStore(demo_copy).read_split("demo", "cls_split").indices
    for p in before:
        np.testing.assert_array_equal(before[p], after[p])


def test_drawn_split_structure_and_determinism(cli, demo_copy):
    r = cli("split", "demo", "--seen", 20, "--unseen", 5, "--seed", 7, "--split", "mine", "--store", demo_copy)
    assert r.exit_code == 0, r
    fs = FeatureStore(demo_copy)
    s = fs.read_split("demo", "mine")
    c = s.classes
    assert len(c["stage_2_train"]) == 20 and len(c["stage_2_test_unseen"]) == 5
    assert not set(c["stage_1_val_unseen"]) & set(c["stage_2_test_unseen"])
    assert sorted(c["stage_1_train"] + c["stage_1_val_unseen"]) == c["stage_2_train"]
    assert s.attrs["how"] == {"method": "drawn", "seed": 7, "seen": 20, "unseen": 5, "val_unseen": 7, "held_out": 0.1}
    _, labels, _ = fs.read_videos("demo")
    # seen-class videos are divided between train, val and test without overlap
    seen_parts = [s.indices[p]
                  for p in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen", "stage_2_test_seen")]
    joined = np.concatenate(seen_parts)
    assert len(joined) == len(np.unique(joined)) == np.isin(labels, c["stage_2_train"]).sum()
    again = draw_split(labels, 48, 20, 5, 7)[0]
    for p in s.indices:
        np.testing.assert_array_equal(again[p], s.indices[p])


def _fails(cli, store, *args, needle):
    before = tree_digest(store)
    r = cli("split", *args, "--store", store)
    assert r.exit_code != 0, r
    assert needle in r.stderr, r.stderr
    assert tree_digest(store) == before
    return r


def test_error_unknown_split_folder(cli, demo_copy):
    r = _fails(cli, demo_copy, "demo", "--split", "main_split", needle="without class-split folder 'main_split'")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1


def test_error_seen_without_unseen(cli, demo_copy):
    _fails(cli, demo_copy, "demo", "--seen", 10, needle="needs both --seen and --unseen")


def test_error_too_many_classes(cli, demo_copy):
    _fails(cli, demo_copy, "demo", "--seen", 45, "--unseen", 5, needle="exceeds the 48 classes")


def test_error_from_folder_with_unknown_class(cli, demo_copy, tmp_path):
    folder = tmp_path / "cs" / "cls_split"
    folder.mkdir(parents=True)
    for stage in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen", "stage_2_test_seen",
                  "stage_2_test_unseen"):
        (folder / f"{stage}.txt").write_text("class_000\nnot_a_class\n")
    _fails(cli, demo_copy, "demo", "--from", tmp_path / "cs",
           needle="'not_a_class' is not in the classes of dataset 'demo'")


def test_error_from_missing_folder(cli, demo_copy, tmp_path):
    _fails(cli, demo_copy, "demo", "--from", tmp_path / "nowhere", needle="no class-split folder")


def test_error_dataset_not_in_store(cli, demo_copy):
    _fails(cli, demo_copy, "ucf", needle="'ucf' is not in the store")


def test_error_usage_exit_code_2(cli, demo_copy):
    r = cli("split", "demo", "--seen", "many", "--store", demo_copy)
    assert r.exit_code == 2
    # a negative seed (numpy's generator takes none) is a usage error, not a traceback
    r = cli("split", "demo", "--seen", "20", "--unseen", "5", "--seed", "-1", "--split", "neg", "--store", demo_copy)
    assert r.exit_code == 2 and "Invalid value for '--seed'" in r.stderr


def test_classes_too_small_to_hold_out_a_video():
    """10 % of a seen class's videos are held out, rounded: none below 6 videos (round(0.5) == 0)."""
    from clipclap_cli.errors import SplitError

    with pytest.raises(SplitError, match=r"without videos: .* largest seen class drawn \(5 videos\)"):
        draw_split(np.repeat(np.arange(5), 5), 5, 3, 2, 0)
    indices, _, _ = draw_split(np.repeat(np.arange(5), 6), 5, 3, 2, 0)
    assert len(indices["stage_1_val_seen"]) == 2 and len(indices["stage_2_test_seen"]) == 3
