"""The training-free `zeroshot` head: CLIP's and CLAP's own zero-shot classifiers, fused.

Checked against cosine classifiers computed here with scikit-learn's cosine_similarity, on tiny
data and on the demo benchmark through `clipclap train`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity

from clipclap_cli.api import FeatureDims
from clipclap_cli.store.feature_store import FeatureStore

SMALL = FeatureDims(audio=6, video=4, text_parts=(("clip", 4), ("clap", 6)))


def _head(audio_weight=0.5, dims=SMALL):
    from clipclap_cli.params import build_params
    from clipclap_plugins.heads_zeroshot import ZeroshotHead

    return ZeroshotHead(dims, build_params(ZeroshotHead.Params, {"audio_weight": audio_weight}))


@pytest.mark.parametrize("weight", [0.5, 0.2, 0.0, 1.0])
def test_distances_are_the_fused_cosine_classifier_by_hand(weight):
    rng = np.random.default_rng(3)
    video, audio = rng.normal(size=(9, 4)), rng.normal(size=(9, 6)) * 5  # not unit length: it normalises
    clip, clap = rng.normal(size=(5, 4)), rng.normal(size=(5, 6))
    head = _head(weight).eval()
    d = head.distances(torch.tensor(audio, dtype=torch.float32), torch.tensor(video, dtype=torch.float32),
                       torch.tensor(np.hstack([clip, clap]), dtype=torch.float32))
    cos_v, cos_a = cosine_similarity(video, clip), cosine_similarity(audio, clap)
    fused = (1 - weight) * cos_v + weight * cos_a
    np.testing.assert_allclose(d["video"].numpy(), 100 * (1 - cos_v), atol=2e-5)
    np.testing.assert_allclose(d["audio"].numpy(), 100 * (1 - cos_a), atol=2e-5)
    np.testing.assert_allclose(d["both"].numpy(), 100 * (1 - fused), atol=2e-5)
    assert (d["both"].argmin(1).numpy() == fused.argmax(1)).all()


def test_it_reads_only_the_label_embeddings_its_weights_use():
    from clipclap_plugins.heads_zeroshot import ZeroshotHead

    assert ZeroshotHead.label_parts(ZeroshotHead.Params()) == ("clip", "clap")
    assert ZeroshotHead.label_parts(ZeroshotHead.Params(audio_weight=0)) == ("clip",)
    assert ZeroshotHead.label_parts(ZeroshotHead.Params(audio_weight=1)) == ("clap",)
    # a dataset with CLIP label embeddings alone: video only
    head = _head(0.0, FeatureDims(audio=6, video=4, text_parts=(("clip", 4),))).eval()
    video, clip = torch.randn(3, 4), torch.randn(2, 4)
    d = head.distances(torch.randn(3, 6), video, clip)
    assert set(d) == {"video", "both"} and torch.equal(d["both"], d["video"])
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="audio_weight"):
            ZeroshotHead.Params(audio_weight=bad)


def _zsl_by_hand(store: FeatureStore, dataset: str, weight: float = 0.5) -> float:
    """Mean per-class accuracy over the unseen test classes, classifying among them alone."""
    split = store.read_split(dataset, "cls_split")
    _, labels, _ = store.read_videos(dataset)
    rows = split.indices["stage_2_test_unseen"]
    unseen = np.asarray(split.classes["stage_2_test_unseen"])
    video, audio = store.read_features(dataset, "video")[rows], store.read_features(dataset, "audio")[rows]
    clip = store.read_label_embeddings(dataset, "clip")[unseen]
    clap = store.read_label_embeddings(dataset, "clap")[unseen]
    fused = (1 - weight) * cosine_similarity(video, clip) + weight * cosine_similarity(audio, clap)
    predicted, truth = unseen[fused.argmax(1)], labels[rows]
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in unseen]))


def test_train_zeroshot_writes_a_normal_run_whose_zsl_is_the_cosine_classifiers(cli, demo_store, tmp_path):
    """No optimiser step, one epoch per stage (more asked for on the command line is not its to
    take), the usual run folder, and a ZSL equal to the one computed here from the store. On the
    demo, whose features lie near their own encoder's text embedding, it is far above chance."""
    r = cli("train", "demo", "--head", "zeroshot", "--store", demo_store, "--runs-dir", tmp_path, "--epochs", "4",
            "--seeds", "2")
    assert r.exit_code == 0, r
    run = tmp_path / "demo" / "zeroshot" / "seed42"  # no `epochs=4` in the name: it was not taken
    results = json.loads((run / "results.json").read_text())
    assert results["head"] == "zeroshot"
    for stage in (1, 2):
        [line] = (run / f"stage{stage}" / "metrics.jsonl").read_text().splitlines()
        record = json.loads(line)
        assert record["epoch"] == 1 and record["losses"] == {}
        assert json.loads((run / f"stage{stage}" / "result.json").read_text())["best_epoch"] == 1
    assert "training-free" in r.stderr
    zsl = _zsl_by_hand(FeatureStore(demo_store), "demo")
    assert results["test"]["zsl"] == pytest.approx(zsl, abs=1e-6)
    assert zsl > 1 / 6 + 0.2  # 6 unseen classes: chance is 1/6
    again = json.loads((tmp_path / "demo" / "zeroshot" / "seed43" / "results.json").read_text())
    assert again["test"] == results["test"]  # nothing random in it: every seed gives the same
    md = cli("report", tmp_path).stdout
    assert "| zeroshot |" in md


def test_a_dataset_whose_features_are_not_in_the_label_space_is_refused(cli, tmp_path):
    """Video 10 wide against CLIP labels 8 wide cannot be compared: one line saying so, no run."""
    user = tmp_path / "d.toml"
    user.write_text('[datasets.narrow]\nkind = "synthetic"\nsplit = "cls_split"\n'
                    "train_classes = 4\nval_unseen_classes = 2\ntest_unseen_classes = 2\nvideos_per_class = 12\n"
                    "dims = { audio = 12, video = 10, clip = 8, clap = 12 }\n")
    store = tmp_path / "s.zarr"
    assert cli("demo", "--dataset", "narrow", "--no-train", "--datasets", user, "--store", store).exit_code == 0
    r = cli("train", "narrow", "--head", "zeroshot", "--datasets", user, "--store", store,
            "--runs-dir", tmp_path / "runs")
    assert r.exit_code != 0 and len(r.stderr.strip().splitlines()) == 1, r
    assert "zeroshot" in r.stderr and "video is 10 wide, clip 8" in r.stderr
    assert "audio" not in r.stderr.split("but", 1)[1]  # audio and CLAP agree: only video is named
    assert not (tmp_path / "runs").exists()
