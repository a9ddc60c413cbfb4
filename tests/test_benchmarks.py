"""The benchmark scripts' own arithmetic (their timings are printed, never asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench_protocol():
    spec = importlib.util.spec_from_file_location("bench_protocol", ROOT / "benchmarks" / "bench_protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mm(m: int, k: int, n: int) -> int:
    """FLOPs of an (m x k) @ (k x n) product, as the floor counts them (one multiply and one add)."""
    return 2 * m * k * n


@pytest.mark.parametrize("replay", [True, False])
def test_the_compute_floor_counts_the_clipclap_epoch_by_hand(demo_store, replay):
    """The floor's numerator (bench_protocol.epoch_flops, torch's FlopCounterMode over a real step
    and a real validation pass) equals the ClipClap step's matrix products written out from
    SPEC.md's modules, times the batches of an epoch, plus the validation pass's encoders."""
    import torch

    from clipclap_cli.api import FeatureDims
    from clipclap_cli.data.datasets_toml import load_catalog
    from clipclap_cli.data.protocol_data import load_protocol_data
    from clipclap_cli.plugins.manager import make_plugin_manager
    from clipclap_cli.plugins.registry import create_head
    from clipclap_cli.protocol import TrainSettings
    from clipclap_cli.runs.spec import store_dims
    from clipclap_cli.store.feature_store import FeatureStore
    from clipclap_cli.train.trainer import Trainer

    bench = _bench_protocol()
    pm = make_plugin_manager(entrypoints=False)
    store = FeatureStore(demo_store)
    entry = load_catalog(pm).get("demo")
    data = load_protocol_data(store, "demo", entry.split, "cpu")
    raw = store_dims(store, "demo")
    dims = FeatureDims(raw["audio"], raw["video"], tuple(tuple(p) for p in raw["text_parts"]))
    torch.manual_seed(0)
    head = create_head("clipclap", dims, {}, pm=pm)
    train_set, val = data.stage(1)
    cfg = TrainSettings(epochs=1, lr=entry.train_settings.lr, device="cpu", replay_forward=replay)
    trainer = Trainer(head, data, train_set, val, cfg)
    before = trainer.generator.get_state()
    counted = bench.epoch_flops(trainer)
    trainer.generator.set_state(before)  # the batch epoch_flops drew, to know its distinct classes
    _, targets = trainer.sampler.draw(cfg.batch_size)

    b, k, d = cfg.batch_size, len(train_set.classes), len(torch.unique(targets))
    labels = dims.text_slice(*head.label_parts(head.params))
    x, t, h, o = dims.audio + dims.video, labels.stop - labels.start, 512, 64  # SPEC.md's widths
    assert (x, t) == (1536, 1536)  # [video 512 | audio 1024] and [CLIP 512 | CLAP 1024]
    forward = (_mm(k, t, h)  # W_enc's linear layer, once over the training classes
               + _mm(b, x, h)  # O_enc
               + _mm(b, k, h)  # the batch's rows of it (one-hot product)
               + _mm(b, h, h) + _mm(b, h, o)  # O_proj
               + _mm(b, o, h) + _mm(b, h, h)  # D_o
               + _mm(b, h, o) + _mm(b, o, h)  # W_proj and D_w on the batch
               + _mm(k, h, o) + _mm(b, o, k))  # W_proj on the classes, the logits
    # backward: two products per forward one, except the weight gradient alone where the input is
    # data (O_enc, W_enc) and the input gradient alone where the weight is data (the one-hot rows)
    backward = 2 * forward - _mm(k, t, h) - _mm(b, x, h) - _mm(b, k, h)
    replay_forward = _mm(b, x, h) + _mm(d, t, h) + _mm(b, h, h) + _mm(b, h, o) + _mm(b, h, o)
    n, c = len(val.videos), len(val.classes)
    validation = _mm(n, x, h) + _mm(n, h, h) + _mm(n, h, o) + _mm(c, t, h) + _mm(c, h, o)
    step = forward + backward + (replay_forward if replay else 0)
    assert counted == cfg.batches_per_epoch * step + validation
