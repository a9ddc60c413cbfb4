"""The `clipclap` fusion head against the reference's goldens, and checkpoint round trips."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from clipclap_cli.api import FeatureDims
from clipclap_cli.checkpoints import load_into, load_model, load_reference_checkpoint, save_model
from clipclap_cli.errors import CheckpointError
from clipclap_cli.heads_base import Batch
from clipclap_cli.registries import create_head

GOLDENS = Path(__file__).resolve().parents[2] / "shared" / "goldens"
DIMS = FeatureDims(audio=1024, video=512, text_parts=(("clip", 512), ("clap", 1024)))


@pytest.fixture(scope="module")
def model_a():
    z = np.load(GOLDENS / "model_a.npz")
    return {k: torch.from_numpy(z[k]) for k in z.files}, json.loads((GOLDENS / "model_a.json").read_text())


def _golden_head(pm, model_a):
    arrays, _ = model_a
    head = create_head("clipclap", DIMS, {}, pm=pm)
    load_into(head, {k[len("state."):]: v for k, v in arrays.items() if k.startswith("state.")}, "model_a")
    return head.eval()


def test_reference_state_dict_loads_and_reproduces_embeddings(pm, model_a):
    arrays, _ = model_a
    head = _golden_head(pm, model_a)
    with torch.no_grad():
        theta_o = head.embed_samples(arrays["audio"], arrays["video"])
        theta_w = head.class_embeddings(arrays["class_text"])
    torch.testing.assert_close(theta_o, arrays["theta_o"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(theta_w, arrays["theta_w"], rtol=1e-5, atol=1e-6)


def test_reference_losses(pm, model_a):
    arrays, meta = model_a
    head = _golden_head(pm, model_a)
    labels = arrays["labels"].long()
    batch = Batch(arrays["audio"], arrays["video"], arrays["class_text"][labels], labels)
    with torch.no_grad():
        total, parts = head.loss(batch, arrays["class_text"])
    want = meta["losses_eval_mode"]
    assert float(total) == pytest.approx(want["Loss/total_loss"], rel=1e-5)
    for name in ("cross_entropy", "loss_reg", "loss_cmd_rec"):
        assert float(parts[name]) == pytest.approx(want[f"Loss/{name}"], rel=1e-5), name


def test_state_dict_names_are_the_published_ones(pm, model_a):
    _, meta = model_a
    head = create_head("clipclap", DIMS, {}, pm=pm)
    assert sorted(head.state_dict()) == sorted(meta["state_dict_keys"])


@pytest.mark.parametrize("modality,labels,in_dim,w_dim", [
    ("audio", "both", 1024, 1024), ("video", "both", 512, 512),
    ("both", "clip", 1536, 512), ("both", "clap", 1536, 1024), ("both", "both", 1536, 1536),
])
def test_ablation_input_widths(pm, modality, labels, in_dim, w_dim):
    head = create_head("clipclap", DIMS, {"modality": modality, "labels": labels}, pm=pm)
    assert head.O_enc.fc[0].in_features == in_dim and head.W_enc.fc[0].in_features == w_dim
    batch = Batch(torch.randn(8, 1024), torch.randn(8, 512), torch.randn(8, 1536), torch.arange(8) % 3)
    total, _ = head.loss(batch, torch.randn(3, 1536))
    total.backward()
    assert torch.isfinite(total)


def test_safetensors_round_trip(pm, tmp_path):
    torch.manual_seed(0)
    head = create_head("clipclap", DIMS, {}, pm=pm)
    save_model(tmp_path / "m.safetensors", head, {"epoch": 3})
    state, meta = load_model(tmp_path / "m.safetensors")
    other = create_head("clipclap", DIMS, {}, pm=pm)
    load_into(other, state, "m")
    assert meta == {"epoch": 3}
    for k, v in head.state_dict().items():
        assert torch.equal(v, other.state_dict()[k]), k


def test_shape_mismatch_is_one_clear_error(pm):
    head = create_head("clipclap", DIMS, {"modality": "audio"}, pm=pm)
    state = create_head("clipclap", DIMS, {}, pm=pm).state_dict()
    with pytest.raises(CheckpointError, match=r"O_enc.fc.0.weight has shape \(512, 1536\).*expects \(512, 1024\)"):
        load_into(head, state, "x.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_reference_checkpoint_loads_weights_only(tmp_path, capsys):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 7}, good)
    state, epoch = load_reference_checkpoint(good)
    assert epoch == 7 and torch.equal(state["w"], torch.ones(2))
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"model": _Evil(), "epoch": 1}, fh)
    with pytest.raises(CheckpointError, match="not a loadable torch checkpoint"):
        load_reference_checkpoint(evil)
    assert "pwned" not in capsys.readouterr().out
