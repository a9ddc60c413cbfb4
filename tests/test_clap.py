"""The CLAP audio path (log-mel front end, HTS-AT, projection) against the reference's golden
(../shared/goldens/clap_a), loaded through the `clap` encoder's checkpoint option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipclap_plugins.logmel import LogMel, hz_to_mel, mel_filters, mel_to_hz
from shared_material import GOLDENS


def test_logmel_reproduces_reference():
    z = np.load(GOLDENS / "clap_a.npz")
    out = LogMel()(torch.from_numpy(z["waveform"])).numpy()
    assert out.shape == z["logmel"].shape == (2, 1, 1001, 64)
    assert np.abs(out - z["logmel"]).max() < 1e-3  # dB


def test_mel_filters_equal_the_reference_checkpoint_buffer():
    z = np.load(GOLDENS / "clap_a.npz")
    ref = z["state.audio_encoder.audio_enc.audio_feats_extractor.log_trans.melW"]  # (513, 64)
    np.testing.assert_allclose(mel_filters(32000, 1024, 64, 50, 14000).T, ref, atol=1e-7)


def test_slaney_mel_scale_hand_values():
    # linear below 1 kHz (200/3 Hz per mel), 15 mel at 1 kHz, log step ln(6.4)/27 above
    assert hz_to_mel(np.array([0.0, 200 / 3, 1000.0])).tolist() == [0.0, 1.0, 15.0]
    assert float(hz_to_mel(6400.0)) == np.float64(15 + 27)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(np.array([50.0, 999.0, 14000.0]))), [50.0, 999.0, 14000.0])


def test_htsat_reproduces_reference_features_and_embedding(tmp_path):
    import json

    from clipclap_plugins.clap_htsat import ClapAudio, HtsatConfig

    z = np.load(GOLDENS / "clap_a.npz")
    h = json.loads((GOLDENS / "clap_a.json").read_text())["htsat"]
    cfg = HtsatConfig(spec_size=h["spec_size"], patch_size=h["patch_size"], patch_stride=h["patch_stride"][0],
                      window_size=h["window_size"], embed_dim=h["embed_dim"], depths=tuple(h["depths"]),
                      num_heads=tuple(h["num_heads"]), num_classes=h["num_classes"], embed_size=32)
    model = ClapAudio(cfg).eval()
    model.load_reference({k[len("state."):]: torch.from_numpy(z[k]) for k in z.files if k.startswith("state.")})
    with torch.no_grad():
        features = model.features(torch.from_numpy(z["waveform"])).numpy()
    np.testing.assert_allclose(features, z["audio_features"], rtol=1e-4, atol=1e-5)


def test_clap_encoder_loads_a_wavcaps_checkpoint_by_its_key_names(tmp_path, pm):
    from clipclap_cli.plugins.registry import get_encoder

    z = np.load(GOLDENS / "clap_a.npz")
    state = {k[len("state."):]: torch.from_numpy(z[k]) for k in z.files if k.startswith("state.")}
    # laid out as WavCaps' retrieval/pretrain.py saves it: the model's state dict, the optimizer's
    # (after a step, so it holds per-parameter moments), the YAML config as plain data, the epoch;
    # all of it must pass torch.load(weights_only=True)
    params = [torch.nn.Parameter(v.clone()) for v in state.values() if v.is_floating_point()]
    optimizer = torch.optim.AdamW(params, lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    config = {"seed": 20, "optim_args": {"lr": 5e-5, "betas": [0.9, 0.999], "optimizer_name": "adam"},
              "audio_encoder_args": {"type": "transformer", "model": "htsat", "pretrained": True}}
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "config": config, "epoch": 9},
               tmp_path / "HTSAT_BERT_zero_shot.pt")
    cls = type(get_encoder("clap", pm))
    enc = cls(cls.Params(size="tiny", checkpoint=str(tmp_path / "HTSAT_BERT_zero_shot.pt")))
    out = enc.encode_batch(list(z["waveform"]))
    np.testing.assert_allclose(out, z["audio_embedding"], rtol=1e-4, atol=1e-5)
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_clap_checkpoint_that_cannot_load_says_why(tmp_path, pm):
    """A refused or foreign file is one EncoderError naming the file and torch's reason."""
    from clipclap_cli.errors import ClipclapError
    from clipclap_cli.plugins.registry import get_encoder

    cls = type(get_encoder("clap", pm))
    notes = tmp_path / "HTSAT_BERT_zero_shot.pt"
    notes.write_text("<html>404</html>")  # a download that went wrong
    with pytest.raises(ClipclapError) as e:
        cls(cls.Params(size="tiny", checkpoint=str(notes))).encode_batch([np.zeros(320_000, np.float32)])
    assert str(e.value) == (f"CLAP checkpoint {notes}: not a torch checkpoint (torch.save writes a zip archive "
                            "or a pickle; this file is neither)")


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "person", "can", "be", "heard", ".", "class",
         "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "##0", "##1", "##2", "##3", "##4", "##5", "##6", "##7",
         "##8", "##9", "of", "sound", "playing"]


def test_clap_text_branch_embed_and_checkpoint_keys(tmp_path, pm, cli, demo_store):
    import shutil

    from clipclap_cli.data.datasets_toml import benchmarks_dir
    from clipclap_cli.data.label_embeddings import read_templates
    from clipclap_cli.plugins.registry import get_encoder
    from clipclap_cli.store.feature_store import FeatureStore

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    cls = type(get_encoder("clap", pm))
    enc = cls(cls.Params(size="tiny", vocab=str(vocab)))
    one = enc.encode_text(["the person can be heard.", "a sound of class 12"])
    assert one.shape == (2, 32) and np.allclose(np.linalg.norm(one, axis=1), 1, atol=1e-5)
    assert not np.allclose(one[0], one[1])
    # the WavCaps key names: a checkpoint holding the text branch loads into a fresh encoder
    state = {f"text_encoder.text_encoder.{k}": v for k, v in enc._text.text_encoder.text_encoder.state_dict().items()}
    state |= {f"text_proj.{k}": v + 0.05 for k, v in enc._text.text_proj.state_dict().items()}
    torch.save({"model": state}, tmp_path / "ckpt.pt")
    loaded = cls(cls.Params(size="tiny", vocab=str(vocab), checkpoint=str(tmp_path / "ckpt.pt")))
    loaded._load_text()
    for key, value in loaded._text.state_dict().items():
        assert torch.equal(value, state[key]), key
    # clipclap embed --encoder clap: rows unit-norm and equal to a direct computation
    store = tmp_path / "s.zarr"
    shutil.copytree(demo_store, store)
    r = cli("embed", "demo", "--encoder", "clap", "--store", store, "-e", "size=tiny", "-e", f"vocab={vocab}")
    assert r.exit_code == 0, r
    rows = FeatureStore(store).read_label_embeddings("demo", "clap")
    names = FeatureStore(store).info("demo")["prompt_names"]
    templates = read_templates(benchmarks_dir() / "UCF" / "prompts.toml", "clap_text")
    assert rows.shape == (48, 32) and np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    for c in (3, 40):
        mean = enc.encode_text([t.format(names[c]) for t in templates]).mean(axis=0)
        assert np.allclose(rows[c], mean / np.linalg.norm(mean), atol=1e-6)


def test_clap_text_without_vocab_says_which_file(cli, demo_store, monkeypatch):
    monkeypatch.delenv("CLIPCLAP_BERT_VOCAB", raising=False)
    r = cli("embed", "demo", "--encoder", "clap", "--store", demo_store, "-e", "size=tiny")
    assert r.exit_code == 1 and "vocab.txt" in r.stderr and "bert-base-uncased" in r.stderr
