"""Every registered fusion head (built-in and the example plugin's) against the head contract,
and each baseline's loss against a hand computation of BASELINES.md's formula."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipclap_cli.api import FeatureDims
from clipclap_cli.data.protocol_data import legacy_label_permutation
from clipclap_cli.plugins.fusion_head import Batch
from clipclap_cli.plugins.registry import create_head, list_heads
from clipclap_cli.runs.checkpoints import load_into, load_model, save_model
from example_plugin import manager_with_example
from shared_material import BENCHMARKS, GOLDENS

ROOT = Path(__file__).resolve().parents[1]
DIMS = FeatureDims(audio=1024, video=512, text_parts=(("clip", 512), ("clap", 1024)))
PM = manager_with_example()
HEADS = list_heads(PM).names()


def _batch(n=12, classes=5, seed=0, dims=DIMS):
    g = torch.Generator().manual_seed(seed)
    class_text = F.normalize(torch.randn(classes, dims.text, generator=g))
    target = torch.arange(n) % classes
    target_neg = (target + 1 + torch.randint(classes - 1, (n,), generator=g)) % classes
    return Batch(torch.randn(n, dims.audio, generator=g), F.normalize(torch.randn(n, dims.video, generator=g)),
                 class_text[target], target, torch.randn(n, dims.audio, generator=g),
                 F.normalize(torch.randn(n, dims.video, generator=g)), class_text[target_neg], target_neg), class_text


def test_every_baseline_is_registered():
    assert {"clipclap", "cjme", "avgzslnet", "avca", "hyper-multiple", "devise", "ale", "sje", "apn", "tcaf",
            "bilinear"} <= set(HEADS)


@pytest.mark.parametrize("name", HEADS)
def test_head_contract(name, tmp_path):
    torch.manual_seed(0)
    head = create_head(name, DIMS, {}, pm=PM)
    batch, class_text = _batch()
    if head.training_free:  # nothing to learn: the trainer never asks for a loss (test_zeroshot.py checks it)
        assert list(head.parameters()) == []
        head.eval()
        assert "both" in head.distances(batch.audio, batch.video, class_text)
        return
    head.train()
    total, parts = head.loss(batch, class_text)
    assert total.ndim == 0 and torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())
    total.backward()
    grads = [p.grad for p in head.param_groups() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    head.replay_forward(batch)
    head.eval()
    with torch.no_grad():
        dists = head.distances(batch.audio, batch.video, class_text)
    assert "both" in dists and set(dists) <= {"audio", "video", "both"}
    for d in dists.values():
        assert d.shape == (12, 5) and torch.isfinite(d).all() and (d >= 0).all()
    # state dict round trip through safetensors gives the same predictions
    save_model(tmp_path / "h.safetensors", head, {"head": name})
    other = create_head(name, DIMS, {}, pm=PM)
    state, meta = load_model(tmp_path / "h.safetensors")
    load_into(other, state, "h")
    other.eval()
    with torch.no_grad():
        again = other.distances(batch.audio, batch.video, class_text)
    assert meta == {"head": name}
    for mode in dists:
        torch.testing.assert_close(again[mode], dists[mode], rtol=0, atol=0)


# ----------------------------------------------------------------------------- goldens


def _golden(name):
    z = np.load(GOLDENS / f"head_{name}_a.npz")
    arrays = {k: torch.from_numpy(z[k]) for k in z.files}
    meta = json.loads((GOLDENS / f"head_{name}_a.json").read_text())
    head = create_head(name, DIMS, {}, pm=PM)
    load_into(head, {k[len("state."):]: v for k, v in arrays.items() if k.startswith("state.")}, name)
    head.eval()
    ct, lab, neg = arrays["class_text"], arrays["labels"].long(), arrays["labels_neg"].long()
    batch = Batch(arrays["audio"], arrays["video"], ct[lab], lab,
                  arrays["audio_neg"], arrays["video_neg"], ct[neg], neg)
    return head, batch, ct, arrays, meta


def _close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_label_columns_by_name():
    """`text_slice` finds the columns of named label embeddings, and the clipclap head reads the
    ones its ablation names: on a store with CLIP alone, `labels=clip` builds and `both` does not."""
    dims = FeatureDims(audio=3, video=2, text_parts=(("clip", 2), ("clap", 3)))
    assert (dims.text_slice("clip"), dims.text_slice("clap"), dims.text_slice("clip", "clap")) == (
        slice(0, 2), slice(2, 5), slice(0, 5))
    for parts in (("clap", "clip"), ("w2v",), ()):
        with pytest.raises(KeyError):
            dims.text_slice(*parts)
    clip_only = FeatureDims(audio=3, video=2, text_parts=(("clip", 2),))
    for params, parts, width in (({}, ("clip", "clap"), 5), ({"labels": "clip"}, ("clip",), 2),
                                 ({"modality": "video"}, ("clip",), 2), ({"labels": "clap"}, ("clap",), 3),
                                 ({"modality": "audio", "labels": "clip"}, ("clap",), 3)):
        head = create_head("clipclap", dims, params, pm=PM)
        assert head.label_parts(head.params) == parts and head.W_enc.fc[0].in_features == width
    assert create_head("clipclap", clip_only, {"labels": "clip"}, pm=PM).W_enc.fc[0].in_features == 2
    with pytest.raises(KeyError, match="lack clap"):
        create_head("clipclap", clip_only, {}, pm=PM)


def test_cjme_reproduces_reference():
    head, batch, ct, a, meta = _golden("cjme")
    with torch.no_grad():
        total, _ = head.loss(batch, ct)
        net = head.triplet_net
        _close(net.embedding_net1(a["audio"]), a["emb_audio"])
        _close(net.embedding_net2(a["video"]), a["emb_video"])
        _close(net.embedding_net3(ct), a["emb_classes"])
        _close(head.gate(a["audio"], a["video"]), a["attention"])
        assert torch.equal((head.gate(a["audio"], a["video"]) >= 0.5).float(), a["gate"].float())
    assert float(total) == pytest.approx(meta["loss_eval_mode"], rel=1e-5)


def test_avgzslnet_reproduces_reference():
    head, batch, ct, a, meta = _golden("avgzslnet")
    with torch.no_grad():
        parts = head.loss_parts(batch)
        net = head.triplet_net
        _close(net.embedding_net1(a["audio"]), a["emb_audio"])
        _close(net.embedding_net2(a["video"]), a["emb_video"])
        _close(net.embedding_net3(ct), a["emb_classes"])
    want = meta["loss_parts"]["cmd"] | meta["loss_parts"]["ct"]
    for key, value in want.items():
        assert float(parts[key]) == pytest.approx(value, rel=1e-5), key
    assert float(sum(parts.values())) == pytest.approx(meta["loss_eval_mode"], rel=1e-5)


def test_avca_reproduces_reference():
    head, batch, ct, a, meta = _golden("avca")
    with torch.no_grad():
        total, _ = head.loss(batch, ct)
        _, _, theta_a, theta_v = head.encode(a["audio"], a["video"])
        _close(theta_a, a["theta_a"])
        _close(theta_v, a["theta_v"])
        _close(head.W_proj(ct), a["theta_w"])
        _close(head.distances(a["audio"], a["video"], ct)["both"], torch.cdist(a["theta_v"], a["theta_w"]))
    assert float(total) == pytest.approx(meta["loss_eval_mode"], rel=1e-5)
    assert "pos_emb1D" not in dict(head.named_parameters())  # never trained (quirk 5)


# ----------------------------------------------------------------------------- hand computations


def _hinge_matrix(M, x, W, y, margin):
    s = (x @ M.T) @ W.T
    h = np.maximum(0, margin + s - s[np.arange(len(y)), y][:, None])
    h[np.arange(len(y)), y] = 0
    return h


@pytest.mark.parametrize("name", ["devise", "ale", "sje"])
def test_ranking_losses_by_hand(name):
    dims = FeatureDims(audio=3, video=2, text_parts=(("clip", 2), ("clap", 2)))
    head = create_head(name, dims, {"dropout": 0.0, "margin": 0.5}, pm=PM).eval()
    rng = np.random.default_rng(1)
    M = rng.normal(size=(4, 5)).astype(np.float32)
    head.M.weight.data = torch.from_numpy(M)
    a, v = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    W = rng.normal(size=(3, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 1])
    x = np.concatenate([v, a], axis=1)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    h = _hinge_matrix(M, x, W, y, 0.5)
    if name == "devise":
        want = np.mean(h.sum(axis=1))
    elif name == "sje":
        want = np.mean(h.max(axis=1))
    else:
        r = (h > 0).sum(axis=1)
        weight = [sum(1 / j for j in range(1, k + 1)) / k if k else 0.0 for k in r]
        want = np.mean(np.array(weight) * h.sum(axis=1))
    batch = Batch(torch.from_numpy(a), torch.from_numpy(v), torch.from_numpy(W[y]), torch.from_numpy(y))
    with torch.no_grad():
        total, _ = head.loss(batch, torch.from_numpy(W))
    assert float(total) == pytest.approx(want, rel=1e-5)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("fixed", [False, True])
def test_apn_loss_by_hand(fixed):
    dims = FeatureDims(audio=3, video=2, text_parts=(("clip", 2), ("clap", 2)))
    head = create_head("apn", dims, {"fixed": fixed}, pm=PM)
    rng = np.random.default_rng(2)
    P1, P2 = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    head.P_final.data, head.P_l4.data = torch.from_numpy(P1), torch.from_numpy(P2)
    a, v = rng.normal(size=(3, 3)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)
    W = rng.normal(size=(3, 4)).astype(np.float32)
    y = np.array([2, 0, 1])
    x = np.concatenate([v, a], axis=1)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    want = 0.0
    for P in (P1, P2):
        g = x @ P.T
        z = g @ W.T
        z = z if fixed else _softmax(z)  # the original's double softmax
        want += -np.mean(np.log(_softmax(z)[np.arange(3), y])) + np.mean((g - W[y]) ** 2)
    batch = Batch(torch.from_numpy(a), torch.from_numpy(v), torch.from_numpy(W[y]), torch.from_numpy(y))
    with torch.no_grad():
        total, _ = head.loss(batch, torch.from_numpy(W))
    assert float(total) == pytest.approx(want, rel=1e-5)


def _triplet(x, p, n, m=1.0):
    return np.maximum(0, np.linalg.norm(x - p + 1e-6, axis=1) - np.linalg.norm(x - n + 1e-6, axis=1) + m)


@pytest.mark.parametrize("fixed", [False, True])
def test_cjme_loss_by_hand(fixed):
    head = create_head("cjme", DIMS, {"fixed": fixed}, pm=PM).eval()
    batch, ct = _batch(n=6, classes=4, seed=3)
    with torch.no_grad():
        total, _ = head.loss(batch, ct)
        net = head.triplet_net
        a, v, t = (x.numpy() for x in (net.embedding_net1(batch.audio), net.embedding_net2(batch.video),
                                       net.embedding_net3(batch.text)))
        an, vn = net.embedding_net1(batch.audio_neg).numpy(), net.embedding_net2(batch.video_neg).numpy()
        alpha = head.gate(batch.audio, batch.video).numpy()[:, 0]
        t_cls = net.embedding_net3(ct).numpy()
    la, lv = _triplet(t, a, an), _triplet(t, v, vn)
    if fixed:
        l_ct = np.mean((1 - alpha) * la + alpha * lv)
    else:
        l_ct = np.mean(1 - alpha) * la.mean() + alpha.mean() * lv.mean()

    def entropy(z):
        p = _softmax(z)
        return -(p * np.log(p)).sum(axis=1)

    ha, hv = entropy(a @ t_cls.T), entropy(v @ t_cls.T)
    s = np.where(hv - ha > 0.1, 0.0, np.where(ha - hv > 0.1, 1.0, 0.5))
    want = l_ct + np.mean((a - v) ** 2) + np.mean((alpha - s) ** 2)
    assert float(total) == pytest.approx(want, rel=1e-5)


def test_hyper_multiple_is_avca_plus_cosine_structure_alignment():
    """BASELINES.md 4.6: the hyperbolic maps cancel in the cosine matrices (quirk 11)."""
    torch.manual_seed(0)
    hyper = create_head("hyper-multiple", DIMS, {}, pm=PM).eval()
    avca = create_head("avca", DIMS, {}, pm=PM).eval()
    avca.load_state_dict({k: v for k, v in hyper.state_dict().items() if not k.startswith("curvature_net")})
    batch, ct = _batch(n=8, seed=4)
    with torch.no_grad():
        total, parts = hyper.loss(batch, ct)
        base, _ = avca.loss(batch, ct)
        pos_a, pos_v, _, _ = hyper.encode(batch.audio, batch.video)
        neg_a, neg_v, _, _ = hyper.encode(batch.audio_neg, batch.video_neg)

    def structure(x):
        x = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
        return x @ x.T

    want = 1e-3 * (np.mean((structure(pos_v) - structure(pos_a)) ** 2)
                   + np.mean((structure(neg_v) - structure(neg_a)) ** 2))
    assert float(parts["l_align"]) == pytest.approx(want, rel=1e-4)
    assert float(total) == pytest.approx(float(base) + want, rel=1e-5)


def test_tcaf_loss_by_hand_and_cross_modal_mask():
    torch.manual_seed(0)
    head = create_head("tcaf", DIMS, {"depth": 1}, pm=PM).eval()
    batch, ct = _batch(n=6, classes=4, seed=5)
    with torch.no_grad():
        total, _ = head.loss(batch, ct)
        theta_o = head.embed_samples(batch.audio, batch.video).numpy()
        theta_w = head.W_proj(batch.text).numpy()
        rho_o, rho_w = head.D_o(torch.from_numpy(theta_o)).numpy(), head.D_w(torch.from_numpy(theta_w)).numpy()
        t_cls = head.W_proj(ct).numpy()
    w, y = batch.text.numpy(), batch.target.numpy()
    ce = -np.mean(np.log(_softmax(theta_o @ t_cls.T)[np.arange(6), y]))
    want = ce + np.mean((theta_o - theta_w) ** 2) + np.mean((rho_o - w) ** 2) + np.mean((rho_w - w) ** 2)
    assert float(total) == pytest.approx(want, rel=1e-5)
    assert head.allowed.tolist() == [[True, True, True], [True, False, True], [True, True, False]]


# ----------------------------------------------------------------------------- legacy label order


def _classes_and_prompts(dataset, csv_name, column):
    rows = list(csv.DictReader((BENCHMARKS / dataset / "class-split" / csv_name).open()))
    by_original = {r["original"].casefold(): r[column] for r in rows}
    classes = sorted((BENCHMARKS / dataset / "class-split" / "all_class.txt").read_text().split("\n"))
    classes = [c for c in classes if c.strip()]
    return classes, [by_original[c.casefold()] for c in classes]


@pytest.mark.parametrize("dataset, csv_name, column, moved", [
    ("UCF", "ucf_w2v_class_names.csv", "manual", 79),
    ("ActivityNet", "activitynet_w2v_class_names.csv", "manual", 8),
    ("VGGSound", "vggsound_w2v_class_names.csv", "manual", 205),
    ("UCF", "ucf_clip_class_names.csv", "clip_class_name", 0),
])
def test_legacy_label_order_misplaces_what_baselines_measured(dataset, csv_name, column, moved):
    """BASELINES.md 1.3's table: classes whose vector belongs to another class, per file."""
    classes, prompts = _classes_and_prompts(dataset, csv_name, column)
    perm = legacy_label_permutation(prompts)
    assert int((perm != np.arange(len(classes))).sum()) == moved


def test_legacy_label_order_swaps_the_four_activitynet_pairs():
    classes, prompts = _classes_and_prompts("ActivityNet", "activitynet_w2v_class_names.csv", "manual")
    assert len(classes) == 200
    perm = legacy_label_permutation(prompts)
    moved = {prompts[c]: prompts[perm[c]] for c in range(len(classes)) if perm[c] != c}
    assert moved == {
        "Longboarding": "Long jump", "Long jump": "Longboarding",
        "Making an omelette": "Making a sandwich", "Making a sandwich": "Making an omelette",
        "Rock climbing": "Rock-paper-scissors", "Rock-paper-scissors": "Rock climbing",
        "Snowboarding": "Snow tubing", "Snow tubing": "Snowboarding",
    }
