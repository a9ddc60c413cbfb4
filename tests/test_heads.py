"""The `clipclap` fusion head against the reference's goldens, and checkpoint round trips."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from clipclap_cli.api import FeatureDims
from clipclap_cli.errors import CheckpointError
from clipclap_cli.plugins.fusion_head import Batch
from clipclap_cli.plugins.registry import create_head
from clipclap_cli.runs.checkpoints import load_checkpoint_file, load_into, load_model, save_model
from shared_material import GOLDENS

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
    state, epoch = load_checkpoint_file(good)
    assert epoch == 7 and torch.equal(state["w"], torch.ones(2))
    # saved from inside nn.DataParallel: every key is module.<name>
    torch.save({"model": {"module.w": torch.ones(2), "module.b.module.c": torch.zeros(1)}, "epoch": 7}, good)
    state, _ = load_checkpoint_file(good)
    assert sorted(state) == ["b.module.c", "w"]
    torch.save({"model": {"module.w": torch.ones(2), "w": torch.zeros(1)}, "epoch": 7}, good)  # not all: as is
    assert sorted(load_checkpoint_file(good)[0]) == ["module.w", "w"]
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"model": _Evil(), "epoch": 1}, fh, protocol=2)  # as torch.save writes
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint_file(evil)
    assert "pwned" not in capsys.readouterr().out
    # torch's reason, without its page of advice (which suggests weights_only=False) or its colours
    assert str(refused.value) == (f"{evil}: refused, it holds more than tensors and plain containers (Unsupported "
                                  "global: GLOBAL print was not an allowed global by default; checkpoints load with "
                                  "weights_only=True)")


def test_unreadable_checkpoints_say_why_in_one_line(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 7}, good)
    text, cut, empty = tmp_path / "notes.txt", tmp_path / "cut.pt", tmp_path / "empty.pt"
    text.write_text("hello world")  # torch.load's own complaint would be `KeyError: 101`
    cut.write_bytes(good.read_bytes()[:300])
    empty.write_bytes(b"")
    neither = "not a torch checkpoint (torch.save writes a zip archive or a pickle; this file is neither)"
    expected = {text: f"{text}: {neither}", empty: f"{empty}: {neither}", tmp_path: f"{tmp_path}: not a file",
                cut: f"{cut}: not a loadable torch checkpoint (RuntimeError: PytorchStreamReader failed reading zip "
                     "archive: failed finding central directory)",
                tmp_path / "gone.pt": f"{tmp_path / 'gone.pt'}: no such checkpoint"}
    for path, message in expected.items():
        with pytest.raises(CheckpointError) as e:
            load_checkpoint_file(path)
        assert str(e.value) == message


def test_clipclap_model_files_load_as_checkpoints(tmp_path, pm):
    """`evaluate --stage1/--stage2` also takes clipclap's own model files: their tensors and the
    epoch their metadata records; a damaged one is one CheckpointError that says what it is not."""
    head = create_head("clipclap", DIMS, {}, pm=pm)
    path = tmp_path / "best.safetensors"
    save_model(path, head, {"epoch": 3, "run_format": 2})
    state, epoch = load_checkpoint_file(path)
    assert epoch == 3 and state.keys() == head.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in head.state_dict().items())
    save_model(path, head, {"epoch": 3})  # as clipclap 0.1 wrote it: epochs counted from 0
    assert load_checkpoint_file(path)[1] == 4
    path.write_bytes(path.read_bytes()[:1000])  # a partial copy
    with pytest.raises(CheckpointError, match=r"best.safetensors is damaged \(.*\); not a clipclap model file"):
        load_checkpoint_file(path)


def _reference_train_loss(head, batch, class_text):
    """The reference's step (1) and (2) written out module by module: W_enc called twice."""
    F = torch.nn.functional
    o = head.O_enc(torch.cat((batch.video, batch.audio), dim=1))
    w_hat = head.W_enc(batch.text)
    theta_o = head.O_proj(o)
    rho_o = head.D_o(theta_o)
    theta_w = head.W_proj(w_hat)
    rho_w = head.D_w(theta_w)
    logits = theta_o @ head.W_proj(head.W_enc(class_text)).T
    return (F.cross_entropy(logits, batch.target) + F.mse_loss(theta_o, theta_w)
            + F.mse_loss(w_hat, rho_o) + F.mse_loss(w_hat, rho_w))


def _reference_replay_forward(head, batch):
    """The reference's get_embeddings() in train mode (O_enc, W_enc, O_proj, W_proj), outputs discarded."""
    with torch.no_grad():
        o = head.O_enc(torch.cat((batch.video, batch.audio), dim=1))
        w_hat = head.W_enc(batch.text)
        head.O_proj(o)
        head.W_proj(w_hat)


def test_train_mode_step_matches_the_reference_formulation(pm, model_a):
    """The head runs W_enc's linear layer once per training class and gives the batch its rows;
    the loss, its gradients, the dropout masks (same generator state) and every running
    statistic after the loss and the replay forward must be those of the reference's calls."""
    arrays, _ = model_a
    labels = arrays["labels"].long()
    # the goldens' batch, then a batch with repeated classes in shuffled order, as training draws
    repeated = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))][: len(labels) // 2]
    for targets in (labels, torch.cat((repeated, repeated.flip(0)))):
        batch = Batch(arrays["audio"][: len(targets)], arrays["video"][: len(targets)],
                      arrays["class_text"][targets], targets)
        heads = []
        for _ in range(2):
            head = create_head("clipclap", DIMS, {"dropout": 0.1}, pm=pm)
            load_into(head, {k[len("state."):]: v for k, v in arrays.items() if k.startswith("state.")}, "model_a")
            heads.append(head.train())
        torch.manual_seed(7)
        ours, _ = heads[0].loss(batch, arrays["class_text"])
        ours.backward()
        heads[0].replay_forward(batch)
        ours_rng = torch.random.get_rng_state()
        torch.manual_seed(7)
        reference = _reference_train_loss(heads[1], batch, arrays["class_text"])
        reference.backward()
        _reference_replay_forward(heads[1], batch)
        assert torch.equal(ours_rng, torch.random.get_rng_state())  # the same randomness consumed
        assert ours.item() == pytest.approx(reference.item(), rel=1e-6)
        for (name, p), q in zip(heads[0].named_parameters(), heads[1].parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)
        # the running statistics are means over other row sets of the same products, so they may
        # differ in the last bits where the matrix kernel blocks rows by their number (AVX-512 MKL
        # does): about one float32 rounding of the statistics' size (0.15 * 2**-23 = 2e-8)
        for (name, b), c in zip(heads[0].named_buffers(), heads[1].buffers(), strict=True):
            torch.testing.assert_close(b, c, rtol=1e-6, atol=1e-7, msg=name)


def test_dropout_keeps_with_probability_one_minus_p_and_rescales():
    from clipclap_cli.plugins.fusion_head import Dropout

    p, n = 0.1, 1_000_000
    drop = Dropout(p).train()
    x = torch.rand(n) + 0.5
    x.requires_grad_(True)
    y = drop(x)
    kept = y != 0
    # binomial: mean n(1-p), standard deviation sqrt(n p (1-p)) = 300; allow 5 of them
    assert abs(int(kept.sum()) - n * (1 - p)) < 5 * (n * p * (1 - p)) ** 0.5
    torch.testing.assert_close(y[kept], x.detach()[kept] / (1 - p), rtol=1e-6, atol=0)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1 - p), rtol=1e-6, atol=0)
    torch.manual_seed(3)
    first = drop(x.detach())
    torch.manual_seed(3)
    assert torch.equal(drop(x.detach()), first)
    assert torch.equal(drop.eval()(x.detach()), x.detach())
