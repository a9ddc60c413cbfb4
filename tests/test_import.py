"""`clipclap import`: the released feature tree, read by name, with one clear error per bad input."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from clipclap_cli.store.feature_store import FeatureStore
from helpers import tree_digest
from released_tree import write_released_tree

UCF_CLS_COUNTS = {  # SPEC.md: video counts, UCF with cls_split
    "stage_1_train": 3174, "stage_1_val_seen": 353, "stage_1_val_unseen": 1467,
    "stage_2_test_seen": 555, "stage_2_test_unseen": 845,
}


def _check_features_and_embeddings(store, name, written, prompt_csv_column):
    ids, labels, _ = store.read_videos(name)
    video, audio = store.read_features(name, "video"), store.read_features(name, "audio")
    info = store.info(name)
    row_of = {vid: i for i, vid in enumerate(ids)}
    for part, per_class in written.items():
        if part == "text":
            continue
        for stem, (names, v, a) in per_class.items():
            rows = [row_of[n] for n in names]
            np.testing.assert_array_equal(video[rows], v)
            np.testing.assert_array_equal(audio[rows], a)
            assert {info["classes"][labels[r]].casefold() for r in rows} == {stem.casefold()}
    clip, clap = store.read_label_embeddings(name, "clip"), store.read_label_embeddings(name, "clap")
    for cid, prompt in enumerate(info["prompt_names"]):
        np.testing.assert_array_equal(clip[cid], written["text"]["clip"][prompt])
        np.testing.assert_array_equal(clap[cid], written["text"]["clap"][prompt])
    return info


def _check_class_ids_are_the_reference_label_codes(store, name, benchmark):
    """Class ids must be the reference's: the `label_code` column of the public split csvs."""
    import csv

    from released_tree import BENCHMARKS

    ids, labels, _ = store.read_videos(name)
    label_of = dict(zip(ids, labels.tolist(), strict=True))
    checked = 0
    for path in (BENCHMARKS / benchmark / "class-split" / "cls_split").glob("*.csv"):
        for row in csv.DictReader(path.open(newline="")):
            if row["filename"] in label_of:
                assert label_of[row["filename"]] == int(row["label_code"]), (path.name, row)
                checked += 1
    assert checked > 100


def test_import_ucf_tree_counts_features_and_label_embeddings_by_name(tmp_path, cli):
    root = tmp_path / "UCF"
    written = write_released_tree(root, "UCF", "ucf", "ucf_clip_class_names.csv", "clip_class_name")
    store_path = tmp_path / "s.zarr"
    r = cli("import", "ucf", root, "--store", store_path)
    assert r.exit_code == 0, r
    store = FeatureStore(store_path)
    split = store.read_split("ucf", "cls_split")
    assert {p: len(v) for p, v in split.indices.items()} == UCF_CLS_COUNTS
    info = _check_features_and_embeddings(store, "ucf", written, "clip_class_name")
    _check_class_ids_are_the_reference_label_codes(store, "ucf", "UCF")
    # the split-file spelling HandStandPushups is the all_class.txt class HandstandPushups
    assert "HandstandPushups" in info["classes"]
    hsp = info["classes"].index("HandstandPushups")
    _, labels, _ = store.read_videos("ucf")
    assert (labels[split.indices["stage_1_train"]] == hsp).sum() > 0
    assert info["prompt_names"][info["classes"].index("CleanAndJerk")] == "Clean And Jerk"
    assert len(split.classes["stage_2_train"]) == 42 and len(split.classes["stage_2_test_unseen"]) == 6
    # re-importing the same tree is idempotent: the store's bytes do not change
    before = tree_digest(store_path)
    r = cli("import", "ucf", root, "--store", store_path)
    assert r.exit_code == 0 and "unchanged" in r.stderr
    assert tree_digest(store_path) == before


def test_import_activitynet_uses_manual_names(tmp_path, cli):
    root = tmp_path / "ActivityNet"
    written = write_released_tree(root, "ActivityNet", "activitynet", "activitynet_w2v_class_names.csv",
                                  "manual", max_per_class=3)
    store_path = tmp_path / "s.zarr"
    assert cli("import", "activitynet", root, "--store", store_path).exit_code == 0
    store = FeatureStore(store_path)
    info = _check_features_and_embeddings(store, "activitynet", written, "manual")
    _check_class_ids_are_the_reference_label_codes(store, "activitynet", "ActivityNet")
    # one of the four pairs the sorted-key alignment swaps (BASELINES.md 1.3): each gets its own vector
    assert info["prompt_names"][info["classes"].index("Longboarding")] == "Longboarding"
    split = store.read_split("activitynet", "cls_split")
    assert len(split.classes["stage_2_test_unseen"]) == 48 and len(split.classes["stage_1_train"]) == 99
    # --legacy-label-order gives those classes each other's vectors, and touches no other class
    from clipclap_cli.data.protocol_data import load_protocol_data

    normal = load_protocol_data(store, "activitynet", "cls_split")
    legacy = load_protocol_data(store, "activitynet", "cls_split", legacy_label_order=True)
    board, jump = info["prompt_names"].index("Longboarding"), info["prompt_names"].index("Long jump")
    assert (legacy.class_text[board] == normal.class_text[jump]).all()
    assert (legacy.class_text[jump] == normal.class_text[board]).all()
    assert int((legacy.class_text != normal.class_text).any(dim=1).sum()) == 8


def test_published_checkpoints_evaluate_with_the_label_order_they_were_trained_with(tmp_path, cli):
    """`evaluate --stage1/--stage2 --legacy-label-order` (BASELINES.md 1.3) on ActivityNet: the
    same numbers as the checkpoints give on a store whose four pairs were swapped by hand.

    So that the label order shows in the numbers, each class's label embedding is its one test
    video's [video | audio] features, and the model maps a video and its class's label embedding
    to the same point: with its own embeddings every test video is nearest its class."""
    import json

    import torch

    from clipclap_cli.api import FeatureDims
    from clipclap_cli.plugins.manager import make_plugin_manager
    from clipclap_cli.plugins.registry import create_head

    root = tmp_path / "ActivityNet"
    write_released_tree(root, "ActivityNet", "activitynet", "activitynet_w2v_class_names.csv", "manual",
                        max_per_class=1)
    store_path = tmp_path / "s.zarr"
    assert cli("import", "activitynet", root, "--store", store_path).exit_code == 0
    store = FeatureStore(store_path)
    _, labels, _ = store.read_videos("activitynet")
    split = store.read_split("activitynet", "cls_split")
    test = split.videos("stage_2_test_seen", "stage_2_test_unseen")
    for encoder, modality in (("clip", "video"), ("clap", "audio")):
        m = store.read_label_embeddings("activitynet", encoder)
        m[labels[test]] = store.read_features("activitynet", modality)[test]
        store.write_label_embeddings("activitynet", encoder, m, {})

    head = create_head("clipclap", FeatureDims(1024, 512, (("clip", 512), ("clap", 1024))), {},
                       pm=make_plugin_manager(entrypoints=False))
    state = head.state_dict()
    for k in [k for k in state if k.startswith("W_enc.")]:
        state["O" + k[1:]] = state[k]  # O_enc = W_enc
    for i, j in ((4, 0), (5, 1)):  # O_proj's second block = W_proj; its first, identity
        for k in [k for k in state if k.startswith(f"W_proj.fc.{j}.")]:
            state[f"O_proj.fc.{i}." + k.split(".")[-1]] = state[k]
    state |= {"O_proj.fc.0.weight": torch.eye(512), "O_proj.fc.0.bias": torch.zeros(512),
              "O_proj.fc.1.weight": torch.ones(512), "O_proj.fc.1.bias": torch.zeros(512),
              "O_proj.fc.1.running_mean": torch.zeros(512), "O_proj.fc.1.running_var": torch.ones(512)}
    for stage in (1, 2):
        torch.save({"model": state, "epoch": 3}, tmp_path / f"s{stage}.pt")

    def evaluate(*extra):
        r = cli("evaluate", "activitynet", "--store", store_path, "--stage1", tmp_path / "s1.pt",
                "--stage2", tmp_path / "s2.pt", "--json", *extra)
        assert r.exit_code == 0, r
        got = json.loads(r.stdout)
        return {k: got[k] for k in ("val", "test", "per_class_accuracy", "zsl_per_class_recall")}

    own, legacy = evaluate(), evaluate("--legacy-label-order")
    swapped = (("Longboarding", "Long jump"), ("Making an omelette", "Making a sandwich"),
               ("Rock climbing", "Rock-paper-scissors"), ("Snowboarding", "Snow tubing"))
    # With its own order every test video is nearest its class. With the legacy order a seen
    # class's one video is nearest its partner's slot, which holds its own features, and its own
    # slot holds the partner's features under the same seen-class bias: it is always wrong.
    # (An unseen class with a seen partner may still be right, by the bias, hence seen ones only.)
    seen_swapped = [c for pair in swapped for c in pair if c in own["per_class_accuracy"]["seen"]]
    assert own["test"]["zsl"] == 100.0 and len(seen_swapped) >= 2, seen_swapped  # percent, as printed
    assert all(own["per_class_accuracy"]["seen"][c] > 0 for c in seen_swapped), own["per_class_accuracy"]
    assert all(legacy["per_class_accuracy"]["seen"][c] == 0 for c in seen_swapped), legacy["per_class_accuracy"]
    prompts = store.info("activitynet")["prompt_names"]
    for encoder in ("clip", "clap"):
        m = store.read_label_embeddings("activitynet", encoder)
        for a, b in swapped:
            i, j = prompts.index(a), prompts.index(b)
            m[[i, j]] = m[[j, i]]
        store.write_label_embeddings("activitynet", encoder, m, {})
    assert evaluate() == legacy


# ---------------------------------------------------------------- error cases
SMALL = ["Archery", "BalanceBeam", "HandStandPushups", "Drumming", "Fencing", "Bowling",
         "ApplyEyeMakeup", "Basketball", "BlowDryHair", "BoxingPunchingBag", "CleanAndJerk"]


@pytest.fixture
def small_tree(tmp_path):
    """A UCF-layout tree with a handful of classes; the class-split txts are trimmed to match."""
    root = tmp_path / "UCF"
    write_released_tree(root, "UCF", "ucf", "ucf_clip_class_names.csv", "clip_class_name",
                        max_per_class=2, classes=SMALL)
    feats = root / "features" / "cls_features_non_averaged"
    for txt in (root / "class-split" / "cls_split").glob("*.txt"):
        part = txt.stem
        keep = [s for s in txt.read_text().split("\n") if s.strip() in SMALL]
        txt.write_text("\n".join(keep) + "\n")
    # the split must still have classes in every partition
    for part in ("stage_1_train", "stage_1_val_unseen", "stage_2_test_unseen"):
        assert list((feats / "video" / part).glob("*.pkl")), part
    return root


@pytest.fixture
def populated(demo_copy):
    """A store that already holds the demo dataset (so 'unchanged' means something): a copy of
    the session's demo store, which is what `clipclap demo --no-train` writes into a new store."""
    return demo_copy


def _assert_fails(cli, store, root, *needles):
    before = tree_digest(store)
    r = cli("import", "ucf", root, "--store", store)
    assert r.exit_code == 1, r
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1, line
    for needle in needles:
        assert needle in line, (needle, line)
    assert tree_digest(store) == before


def _pkl(root, mod, part, stem):
    return root / "features" / "cls_features_non_averaged" / mod / part / f"{stem}.pkl"


def test_small_tree_imports(cli, populated, small_tree):
    assert cli("import", "ucf", small_tree, "--store", populated).exit_code == 0


def test_commands_default_to_the_store_s_only_dataset(cli, populated, small_tree, tmp_path):
    """`clipclap train --stage 1` (the design card's example) trains the one dataset the store
    holds, and `split` works on it too; with several datasets, or none, the command asks for a
    name and writes nothing."""
    runs = tmp_path / "runs"
    r = cli("train", "--stage", "1", "--store", populated, "--runs-dir", runs, "--epochs", "1",
            "--batches-per-epoch", "3")
    assert r.exit_code == 0, r
    run = runs / "demo" / "clipclap,epochs=1,batches-per-epoch=3" / "seed42"
    assert json.loads((run / "stage1" / "result.json").read_text())["epochs"] == 1
    assert cli("split", "--store", populated, "--split", "drawn", "--seen", "30", "--unseen", "6").exit_code == 0
    assert "drawn" in FeatureStore(populated).split_names("demo")
    assert cli("import", "ucf", small_tree, "--store", populated).exit_code == 0
    before = tree_digest(populated)
    for command in (("train", "--runs-dir", tmp_path / "x"), ("split",), ("embed",)):
        r = cli(*command, "--store", populated)
        assert r.exit_code == 1 and r.stderr.strip().endswith("holds 2 (demo, ucf)"), r
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    assert tree_digest(populated) == before
    r = cli("train", "--store", tmp_path / "empty.zarr", "--runs-dir", tmp_path / "x")
    assert r.exit_code == 1 and "holds none yet" in r.stderr and not (tmp_path / "x").exists(), r


def test_reimport_with_other_reading_settings_rewrites_the_dataset(cli, tmp_path, small_tree):
    """Same files, another class order: the fingerprint of the files alone would call it
    unchanged (stores imported before class ids became case-sensitive); it must be rewritten."""
    store_path = tmp_path / "s.zarr"
    assert cli("import", "ucf", small_tree, "--store", store_path).exit_code == 0
    exact = FeatureStore(store_path).info("ucf")["classes"]
    assert exact.index("HammerThrow") < exact.index("Hammering")
    user = tmp_path / "mine.toml"
    user.write_text('[datasets.ucf]\nclass_order = "casefold"\n')
    r = cli("import", "ucf", small_tree, "--store", store_path, "--datasets", user)
    assert r.exit_code == 0 and "unchanged" not in r.stderr, r
    casefold = FeatureStore(store_path).info("ucf")["classes"]
    assert casefold.index("Hammering") < casefold.index("HammerThrow")
    r = cli("import", "ucf", small_tree, "--store", store_path)
    assert r.exit_code == 0 and "unchanged" not in r.stderr and FeatureStore(store_path).info("ucf")["classes"] == exact


def test_error_missing_root(cli, populated, tmp_path):
    _assert_fails(cli, populated, tmp_path / "nowhere", "nowhere", "no such folder")


def test_error_missing_folder(cli, populated, small_tree):
    shutil.rmtree(small_tree / "features" / "cls_features_non_averaged" / "audio" / "stage_1_val_seen")
    _assert_fails(cli, populated, small_tree, "audio/stage_1_val_seen", "missing folder")


def test_error_missing_file(cli, populated, small_tree):
    _pkl(small_tree, "audio", "stage_1_train", "Archery").unlink()
    _assert_fails(cli, populated, small_tree, "audio/stage_1_train/Archery.pkl", "missing file")


def test_error_missing_text_file(cli, populated, small_tree):
    (small_tree / "features" / "cls_features_non_averaged" / "text" / "word_embeddings_ucf_normed.npy").unlink()
    _assert_fails(cli, populated, small_tree, "word_embeddings_ucf_normed.npy", "missing file")


def test_error_truncated_pickle(cli, populated, small_tree):
    f = _pkl(small_tree, "video", "stage_1_train", "Archery")
    f.write_bytes(f.read_bytes()[:100])
    _assert_fails(cli, populated, small_tree, "video/stage_1_train/Archery.pkl", "truncated or corrupt")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_error_malicious_pickle(cli, populated, small_tree, capsys):
    f = _pkl(small_tree, "video", "stage_1_train", "Archery")
    f.write_bytes(pickle.dumps({"features": [Evil()], "video_names": ["x"]}))
    _assert_fails(cli, populated, small_tree, "Archery.pkl", "unsafe pickle", "builtins.print")


def test_error_wrong_feature_dimension(cli, populated, small_tree):
    f = _pkl(small_tree, "audio", "stage_1_train", "Archery")
    obj = pickle.loads(f.read_bytes())
    obj["features"] = [np.zeros(128, np.float32) for _ in obj["features"]]
    f.write_bytes(pickle.dumps(obj))
    _assert_fails(cli, populated, small_tree, "audio/stage_1_train/Archery.pkl", "128-d, expected 1024")


def test_error_audio_video_disagree(cli, populated, small_tree):
    f = _pkl(small_tree, "audio", "stage_1_train", "Archery")
    obj = pickle.loads(f.read_bytes())
    obj["video_names"][0] = b"someone_else"
    f.write_bytes(pickle.dumps(obj))
    _assert_fails(cli, populated, small_tree, "audio/stage_1_train/Archery.pkl", "videos differ")


def test_audio_order_is_aligned_by_name(cli, tmp_path, small_tree):
    f = _pkl(small_tree, "audio", "stage_1_train", "Archery")
    obj = pickle.loads(f.read_bytes())
    obj["features"], obj["video_names"] = obj["features"][::-1], obj["video_names"][::-1]
    f.write_bytes(pickle.dumps(obj))
    store = tmp_path / "aligned.zarr"
    assert cli("import", "ucf", small_tree, "--store", store).exit_code == 0
    fs = FeatureStore(store)
    ids, _, _ = fs.read_videos("ucf")
    audio = fs.read_features("ucf", "audio")
    by_name = dict(zip([n.decode() for n in obj["video_names"]], obj["features"], strict=True))
    for name, vec in by_name.items():
        np.testing.assert_array_equal(audio[list(ids).index(name)], vec)


def test_error_class_unknown_to_all_class(cli, populated, small_tree):
    src = _pkl(small_tree, "video", "stage_1_train", "Archery")
    shutil.copy(src, src.with_name("Quidditch.pkl"))
    shutil.copy(_pkl(small_tree, "audio", "stage_1_train", "Archery"),
                _pkl(small_tree, "audio", "stage_1_train", "Quidditch"))
    _assert_fails(cli, populated, small_tree, "Quidditch.pkl", "not in all_class.txt")


def test_error_class_unknown_in_split_file(cli, populated, small_tree):
    txt = small_tree / "class-split" / "cls_split" / "stage_1_val_unseen.txt"
    txt.write_text(txt.read_text() + "Quidditch\n")
    _assert_fails(cli, populated, small_tree, "stage_1_val_unseen.txt", "'Quidditch' is not in all_class.txt")


def test_error_empty_class_file(cli, populated, small_tree):
    f = _pkl(small_tree, "video", "stage_1_train", "Archery")
    f.write_bytes(pickle.dumps({"features": [], "video_names": [], "fps": []}))
    _assert_fails(cli, populated, small_tree, "video/stage_1_train/Archery.pkl", "empty class file")


def test_error_empty_split_txt(cli, populated, small_tree):
    (small_tree / "class-split" / "cls_split" / "stage_2_test_unseen.txt").write_text("\n")
    _assert_fails(cli, populated, small_tree, "stage_2_test_unseen.txt", "empty class file")


def test_error_unknown_dataset(cli, populated, small_tree):
    before = tree_digest(populated)
    r = cli("import", "ufc", small_tree, "--store", populated)
    assert r.exit_code == 1 and "Did you mean 'ucf'?" in r.stderr
    assert tree_digest(populated) == before
