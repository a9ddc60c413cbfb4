"""No silent wrong number (issue "Trustworthy numbers"): non-finite data never trains, a damaged
store is detected and never read as data, and a split that cannot be scored honestly is refused.
Each damage is made here, by hand, on the store's files; each expectation is computed here."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipclap_cli.api import PARTITIONS, FeatureBundle
from clipclap_cli.data.splits import check_scorable
from clipclap_cli.errors import ImportDataError, SplitError
from clipclap_cli.store.feature_store import FeatureStore
from helpers import register_plugin, tree_digest

TRAIN = ["--epochs", "1", "--batches-per-epoch", "2"]


def _array(store: Path, name: str) -> Path:
    [group] = [p for p in store.iterdir() if p.name.startswith("demo~")]
    return group / name


def _one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1, r
    return lines[0]


# ---------------------------------------------------------------- non-finite data never trains

def _bundle(n=12):
    rng = np.random.default_rng(0)
    return FeatureBundle(classes=["a", "b", "c"], prompt_names=["a", "b", "c"], ids=[f"v{i}" for i in range(n)],
                         labels=np.arange(n) % 3, features={"video": rng.random((n, 4), dtype=np.float32),
                                                            "audio": rng.random((n, 3), dtype=np.float32)},
                         label_embeddings={"clip": rng.random((3, 2), dtype=np.float32)},
                         partition=np.zeros(n, np.int8), provenance={"fingerprint": "x"})


@pytest.mark.parametrize(("where", "row", "value", "says"), [
    ("features", 7, np.nan, "audio features: 1 of 12 rows hold non-finite values (videos: v7)"),
    ("features", 2, np.inf, "audio features: 1 of 12 rows hold non-finite values (videos: v2)"),
    ("label_embeddings", 1, -np.inf, "clip label embeddings: 1 of 3 rows hold non-finite values (classes: b)"),
])
def test_import_refuses_non_finite_data_by_name(tmp_path, where, row, value, says):
    from clipclap_cli.data.ingest import store_bundle
    from test_store_safety import _entry

    b = _bundle()
    (b.features["audio"] if where == "features" else b.label_embeddings["clip"])[row, 0] = value
    fs = FeatureStore(tmp_path / "s.zarr")
    with pytest.raises(ImportDataError, match=re.escape(says)):
        store_bundle(fs, _entry(), b, write_split=False)
    assert not (tmp_path / "s.zarr").exists() or fs.datasets() == []


def test_train_refuses_a_store_holding_nan_and_writes_no_run(cli, demo_copy, tmp_path):
    """NaN in the stored features (a store written by hand, or by a version that did not check):
    train stops before any work, naming the dataset, the array, the rows and the first ids."""
    import zarr

    arr = zarr.open_array(_array(demo_copy, "features/video"), mode="r+")
    ids = FeatureStore(demo_copy).read_videos("demo")[0]
    arr[[5, 9], 3] = np.nan
    line = _one_line(cli("train", "demo", "--store", demo_copy, "--runs-dir", tmp_path / "runs", *TRAIN))
    assert f"features/video is damaged: 2 of {len(ids)} rows hold non-finite values (videos: {ids[5]}, {ids[9]})" \
        in line, line
    assert not (tmp_path / "runs").exists()


def test_a_loss_that_turns_non_finite_stops_the_run_and_keeps_the_last_good_checkpoint(cli, pm, demo_copy, tmp_path):
    from clipclap_plugins.clipclap_head import ClipClapHead

    calls = {"n": 0}

    class Exploding(ClipClapHead):
        """Its loss turns NaN at its 5th step: epoch 2, batch 2 of 3 batches per epoch."""

        head_id = "exploding"

        def loss(self, batch, text):
            loss, parts = super().loss(batch, text)
            calls["n"] += 1
            return (loss * float("nan") if calls["n"] == 5 else loss), parts

    register_plugin(pm, "exploding", heads=[Exploding])
    runs = tmp_path / "runs"
    r = cli("train", "demo", "--head", "exploding", "--store", demo_copy, "--runs-dir", runs, "--epochs", "3",
            "--batches-per-epoch", "3")
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]  # after the epoch-1 progress
    assert r.exit_code == 1 and len(errors) == 1, r
    assert "stage 1: the training loss turned non-finite at epoch 2, batch 2 of 3" in errors[0], r
    [run] = [p.parent for p in runs.rglob("config.json")]
    stage = run / "stage1"
    assert len((stage / "metrics.jsonl").read_text().splitlines()) == 1  # epoch 1 only
    assert (stage / "checkpoint-last.safetensors").exists() and (stage / "best.safetensors").exists()
    assert not (stage / "result.json").exists() and not (run / "results.json").exists()


# ---------------------------------------------------------------- a damaged store is detected

def _damage(store: Path, how: str) -> str:
    """Damage the store's audio features (or a split) as `how` says; returns the array's name."""
    audio = _array(store, "features/audio")
    chunk = audio / "c" / "0" / "0"
    if how == "deleted chunk":
        chunk.unlink()
    elif how == "truncated chunk":
        chunk.write_bytes(chunk.read_bytes()[:1000])
    elif how == "altered byte":
        data = bytearray(chunk.read_bytes())
        data[100] ^= 0x01
        chunk.write_bytes(bytes(data))
    elif how == "array cut short":
        meta = json.loads((audio / "zarr.json").read_text())
        meta["shape"][0] -= 100
        (audio / "zarr.json").write_text(json.dumps(meta))
    elif how == "split chunk deleted":
        [split] = [p for p in _array(store, "splits").iterdir() if p.name.startswith("cls_split")]
        (split / "stage_2_test_unseen" / "c" / "0").unlink()
        return "splits/cls_split/stage_2_test_unseen"
    return "features/audio"


@pytest.mark.parametrize("how", ["deleted chunk", "truncated chunk", "altered byte", "array cut short",
                                 "split chunk deleted"])
def test_damage_is_one_line_naming_the_array_and_its_repair_which_works(cli, demo_copy, tmp_path, how):
    """Training on a damaged store stops in one line that names the dataset, the array and the
    command that writes it again; `verify` lists it and exits 1; the printed repair, run as
    printed, leaves a store that verifies clean."""
    array = _damage(demo_copy, how)
    before = tree_digest(demo_copy)
    line = _one_line(cli("train", "demo", "--store", demo_copy, "--runs-dir", tmp_path / "runs", *TRAIN))
    assert f"dataset 'demo' in {demo_copy}: {array} is damaged" in line, line
    assert not (tmp_path / "runs").exists()
    r = cli("verify", "--store", demo_copy, "--json")
    assert r.exit_code == 1, r
    [row] = [row for row in json.loads(r.stdout) if row["status"] != "ok"]
    assert row["array"] == array and row["status"] == "damaged", row
    assert tree_digest(demo_copy) == before  # verify and the refused train only read
    repair = re.search(r"`(clipclap [^`]+)`", row["repair"]).group(1)
    r = cli(*shlex.split(repair)[1:])
    assert r.exit_code == 0, (repair, r)
    r = cli("verify", "--store", demo_copy, "--json")
    assert r.exit_code == 0 and {row["status"] for row in json.loads(r.stdout)} == {"ok"}, (repair, r)


def test_verify_of_an_intact_store_and_of_one_written_without_checksums(cli, demo_copy, tmp_path, monkeypatch):
    r = cli("verify", "--store", demo_copy)
    assert r.exit_code == 0 and "0 damaged" in r.stderr, r
    # a store as clipclap wrote it before checksums: arrays with no CRC codec
    from clipclap_cli.store import feature_store as store_module

    monkeypatch.setattr(store_module, "array_options", lambda kind: {})
    old = tmp_path / "old.zarr"
    assert cli("demo", "--no-train", "--store", old).exit_code == 0
    monkeypatch.undo()
    r = cli("verify", "--store", old, "--json")
    assert r.exit_code == 0, r
    rows = json.loads(r.stdout)
    assert rows and {row["status"] for row in rows} == {"unchecked"}
    assert all("no checksums" in row["problem"] for row in rows)
    FeatureStore(old).read_features("demo", "audio")  # it still opens and reads


# ---------------------------------------------------------------- a split that cannot be scored

def _split(labels, parts):
    """indices and classes from {partition: [class ids]}: every video of a listed class that the
    partition holds (partition = label // 2 here)."""
    indices = {p: np.flatnonzero(np.isin(labels, parts[p]) & (labels // 2 == i)) for i, p in enumerate(PARTITIONS)}
    return indices, {**parts, "stage_2_train": sorted(parts["stage_1_train"] + parts["stage_1_val_unseen"])}


def test_check_scorable_by_hand():
    labels = np.repeat(np.arange(10), 3)  # classes 0..9, three videos each; class c in partition c // 2
    names = [f"c{i}" for i in range(10)]
    parts = {"stage_1_train": [0, 1], "stage_1_val_seen": [], "stage_1_val_unseen": [4, 5],
             "stage_2_test_seen": [], "stage_2_test_unseen": [8, 9]}
    indices, classes = _split(labels, parts)
    check_scorable(indices, classes, labels, names, "s")  # every listed class has its videos
    parts["stage_2_test_unseen"] = [8, 9, 7]  # class 7 lives in partition 3: none in test-unseen
    indices, classes = _split(labels, parts)
    with pytest.raises(SplitError, match=r"stage_2_test_unseen lists 1 class\(es\) without videos there \(c7\)"):
        check_scorable(indices, classes, labels, names, "s")
    parts["stage_2_test_unseen"] = [8, 9, 4]  # a stage-2 training class among the unseen
    indices, classes = _split(labels, parts)
    with pytest.raises(SplitError, match=r"stage_2_test_unseen classes c4 are stage-2 training classes"):
        check_scorable(indices, classes, labels, names, "s")


def test_a_stored_split_with_an_empty_test_class_is_refused_before_training(cli, demo_copy, tmp_path):
    """A split written before `split` checked (here: by hand) that lists a test-unseen class
    with no test videos: train and evaluate refuse it, naming the class, instead of scoring it 0 %."""
    fs = FeatureStore(demo_copy)
    s = fs.read_split("demo", "cls_split")
    _, labels, _ = fs.read_videos("demo")
    indices = dict(s.indices)
    victim = s.classes["stage_2_test_unseen"][0]
    indices["stage_2_test_unseen"] = indices["stage_2_test_unseen"][labels[indices["stage_2_test_unseen"]] != victim]
    fs.write_split("demo", "holey", indices, s.classes, {})
    name = fs.info("demo")["classes"][victim]
    line = _one_line(cli("train", "demo", "--split", "holey", "--store", demo_copy, "--runs-dir", tmp_path / "r",
                         *TRAIN))
    assert "split 'holey' of dataset 'demo' cannot be scored honestly" in line, line
    assert f"stage_2_test_unseen lists 1 class(es) without videos there ({name})" in line, line
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- reports count honestly

def test_a_seed_trained_twice_counts_once_by_its_newest_run(cli, tmp_path, trained_run):
    """Two runs of the same seed and settings are one sample, not n = 2: the newest counts, the
    older is named as left out; another seed adds to n."""
    import os

    runs = tmp_path / "runs"
    old, new, other = runs / "old", runs / "new", runs / "other"
    for path in (old, new, other):
        shutil.copytree(trained_run, path)
    results = json.loads((trained_run / "results.json").read_text())
    for path, seed, hm_shift in ((old, 42, 0.0), (new, 42, -0.1), (other, 7, -0.2)):
        edited = json.loads(json.dumps(results))
        edited["seed"] = seed
        t = edited["test"]
        t["seen"] = max(0.0, t["seen"] + hm_shift)
        t["hm"] = 2 * t["seen"] * t["unseen"] / (t["seen"] + t["unseen"]) if t["seen"] + t["unseen"] else 0.0
        (path / "results.json").write_text(json.dumps(edited))
    os.utime(old / "results.json", ns=(1_000_000_000, 1_000_000_000))  # the oldest
    r = cli("report", runs, "--format", "json")
    assert r.exit_code == 0, r
    [cell] = json.loads(r.stdout)
    assert cell["n"] == 2 and cell["seeds"] == [7, 42] and cell["replaced"] == [str(old)], cell
    kept = [json.loads((p / "results.json").read_text())["test"]["hm"] * 100 for p in (new, other)]
    assert cell["mean"]["hm"] == pytest.approx(sum(kept) / 2)
    assert f"left out: {old}" in r.stderr, r


# ---------------------------------------------------------------- every hint works verbatim

def test_the_missing_stage_1_hint_runs_as_printed(cli, demo_store, tmp_path, monkeypatch):
    """`train --stage 2` of a new run says to run stage 1 with `--run RUN`; that command, run as
    printed from another folder (no --store, no settings), trains the recorded run on its
    recorded store with its recorded settings, and the run then finishes."""
    runs = tmp_path / "runs"
    r = cli("train", "demo", "--stage", "1", "--store", demo_store, "--runs-dir", runs, *TRAIN, "--seed", "3")
    assert r.exit_code == 0, r
    [run] = [p.parent for p in runs.rglob("config.json")]
    shutil.rmtree(run / "stage1")  # as if stage 1 never finished
    r = cli("train", "--stage", "2", "--run", run, "--store", demo_store)
    hint = re.search(r"run `(clipclap train [^`]+)` first", r.stderr)
    assert r.exit_code == 1 and hint, r
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = cli(*shlex.split(hint.group(1))[1:])
    assert r.exit_code == 0, (hint.group(1), r)
    result = json.loads((run / "stage1" / "result.json").read_text())
    assert result["epochs"] == 1 and json.loads((run / "config.json").read_text())["spec"]["train"]["seed"] == 3
    r = cli("train", "--run", run, "--stage", "2")
    assert r.exit_code == 0 and (run / "results.json").exists(), r
    assert list(elsewhere.iterdir()) == []  # nothing written where the hint was run


def test_evaluate_states_how_many_classes_each_metric_averages(cli, demo_store, tmp_path, trained_run):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    r = cli("evaluate", run, "--store", demo_store, "--json")
    assert r.exit_code == 0, r
    split = FeatureStore(demo_store).read_split("demo", "cls_split")
    expected = {"seen": len(split.classes["stage_2_test_seen"]), "unseen": len(split.classes["stage_2_test_unseen"])}
    assert json.loads(r.stdout)["classes"] == expected == {"seen": 42, "unseen": 6}
    r = cli("evaluate", run, "--store", demo_store)
    assert "S over 42 seen classes, U and ZSL over 6 unseen" in r.stdout + r.stderr, r


@pytest.mark.parametrize("how", ["array metadata deleted", "dataset metadata truncated", "root metadata truncated"])
def test_damaged_metadata_is_named_and_repairable(cli, demo_copy, tmp_path, how):
    """Damage to the metadata rather than to the chunks: one line, no traceback; `verify` names
    it; generating the dataset again (what the line says) repairs it (the root's metadata is
    written by hand, as the line says)."""
    group = _array(demo_copy, "")
    if how == "array metadata deleted":
        (group / "features" / "audio" / "zarr.json").unlink()
    elif how == "dataset metadata truncated":
        (group / "zarr.json").write_text((group / "zarr.json").read_text()[:30])
    else:
        (demo_copy / "zarr.json").write_text('{"zarr_format": 3,')
    r = cli("train", "demo", "--store", demo_copy, "--runs-dir", tmp_path / "runs", *TRAIN)
    line = _one_line(r)
    assert "damaged" in line or "lacks audio features" in line, line
    r = cli("verify", "--store", demo_copy)
    assert r.exit_code == 1 and "Traceback" not in r.stderr, r
    if how == "root metadata truncated":
        assert "root metadata (zarr.json) cannot be read" in r.stderr
        (demo_copy / "zarr.json").write_text(re.search(r"write it again as (\{.*\}) to open", r.stderr).group(1))
    else:
        assert "damaged" in r.stdout, r
        assert cli("demo", "--no-train", "--store", demo_copy).exit_code == 0
    r = cli("verify", "--store", demo_copy, "--json")
    assert r.exit_code == 0 and {row["status"] for row in json.loads(r.stdout)} == {"ok"}, r


def test_a_dataset_whose_videos_are_damaged_is_repaired_by_importing_it_again(tmp_path):
    """The repair the damage message prints (import the same data again) works even when the
    damaged array is the one that says which splits still apply: those are listed and need
    --replace, the rest is rewritten."""
    from clipclap_cli.data.ingest import store_bundle
    from clipclap_cli.errors import StoreError
    from test_store_safety import _bundle as scorable
    from test_store_safety import _entry

    fs = FeatureStore(tmp_path / "s.zarr")
    store_bundle(fs, _entry(), scorable(seed=1))
    fs.write_split("d", "mine", fs.read_split("d", "cls_split").indices, fs.read_split("d", "cls_split").classes, {})
    [group] = [p for p in (tmp_path / "s.zarr").iterdir() if p.name.startswith("d~")]
    (group / "videos" / "labels" / "c" / "0").unlink()
    with pytest.raises(StoreError, match=r"videos/labels is damaged"):
        fs.read_videos("d")
    with pytest.raises(StoreError, match=r"would drop split 'mine' \(the stored copy is damaged\).*--replace"):
        store_bundle(fs, _entry(), scorable(seed=1))
    result = store_bundle(fs, _entry(), scorable(seed=1), replace=True)
    assert not result.unchanged and result.dropped == ("split:mine",)
    assert [row for row in fs.verify("d") if row["status"] != "ok"] == []


def test_generating_the_same_data_again_restores_lost_label_embeddings(cli, demo_copy):
    """A store that lost the label embeddings its data holds (a deleted folder) is not taken as
    unchanged: generating the same dataset again writes them back, as it does a damaged array."""
    shutil.rmtree(_array(demo_copy, "label_embeddings"))
    assert FeatureStore(demo_copy).label_embedding_names("demo") == {}
    r = cli("demo", "--no-train", "--store", demo_copy)
    assert r.exit_code == 0, r
    assert set(FeatureStore(demo_copy).label_embedding_names("demo")) == {"clip", "clap"}
    assert cli("verify", "--store", demo_copy).exit_code == 0
