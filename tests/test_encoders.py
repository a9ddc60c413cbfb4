"""Decoding with PyAV on generated videos; the CLIP encoder (tiny random weights, local checkpoint
loading, offline failure); `clipclap embed`."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch

from clipclap_cli.extract.media import MediaError, audio_clip, recipe_frames
from clipclap_cli.frame_recipes import get_recipe
from clipclap_cli.store.feature_store import FeatureStore
from media_files import write_video

TINY = ("-e", "model=clipclap-tiny-clip")


def middle_frame(path, frames=1):
    """The clean recipe's frame(s): the one on screen at the middle, or at evenly spaced times."""
    return recipe_frames(path, get_recipe("clean"), frames)


def test_middle_frame_is_reached_by_seeking(tmp_path):
    path = write_video(tmp_path / "ramp.mp4", seconds=2.0, fps=10, channel=1)
    frame = middle_frame(path)
    assert frame.shape == (1, 24, 32, 3) and frame.dtype == np.uint8
    # 20 frames ramping 0..255: the middle one (index 10) is 255*10/19 ≈ 134, up to codec error
    assert abs(int(frame[0, 12, 16, 1]) - 134) <= 6 and frame[0, 12, 16, 0] < 10
    three = middle_frame(path, frames=3)
    assert three.shape[0] == 3 and three[0, 12, 16, 1] < three[1, 12, 16, 1] < three[2, 12, 16, 1]


def test_audio_is_resampled_mono_and_padded_to_ten_seconds(tmp_path):
    path = write_video(tmp_path / "tone.mp4", seconds=2.0, freq=500.0)
    wave = audio_clip(path)
    assert wave.shape == (320_000,) and wave.dtype == np.float32
    voiced = wave[: 64_000]
    assert np.abs(wave[70_000:]).max() == 0  # zero padded after the 2 s of sound
    # mono = mean of left (500 Hz, amplitude 1) and right (1 kHz, amplitude 0.5)
    spectrum = np.abs(np.fft.rfft(voiced[8000:40000]))
    freqs = np.fft.rfftfreq(32000, 1 / 32000)
    peak_500, peak_1k = spectrum[np.argmin(abs(freqs - 500))], spectrum[np.argmin(abs(freqs - 1000))]
    assert peak_500 / peak_1k == pytest.approx(2.0, rel=0.1)
    assert np.abs(voiced).max() == pytest.approx(0.5 * (1 + 0.5), rel=0.15)


def test_long_audio_is_centre_cropped(tmp_path):
    path = write_video(tmp_path / "long.mp4", seconds=12.0, fps=2)
    wave = audio_clip(path)
    assert wave.shape == (320_000,) and np.abs(wave[:100]).max() > 0 and np.abs(wave[-100:]).max() > 0


@pytest.mark.parametrize("kind,reason", [("corrupt", "unreadable container"), ("silent", "no audio stream"),
                                         ("empty", "no video (frames|stream)")])
def test_unreadable_videos_say_why(tmp_path, kind, reason):
    path = tmp_path / f"{kind}.mp4"
    if kind == "corrupt":
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    else:
        write_video(path, audio=kind != "silent", frames=kind != "empty")
    with pytest.raises(MediaError, match=reason):
        (audio_clip if kind == "silent" else middle_frame)(path)


@pytest.fixture
def clip_cls(pm):
    from clipclap_cli.plugins.registry import get_encoder

    return type(get_encoder("clip", pm))


def test_tiny_clip_features_are_unit_norm_and_deterministic(clip_cls, tmp_path):
    frames = [middle_frame(write_video(tmp_path / f"{c}.mp4", channel=c)) for c in range(3)]
    a = clip_cls(clip_cls.Params(model="clipclap-tiny-clip")).encode_batch(frames)
    b = clip_cls(clip_cls.Params(model="clipclap-tiny-clip")).encode_batch(frames)
    assert a.shape == (3, 32) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.array_equal(a, b) and not np.allclose(a[0], a[1])


def test_weights_load_from_a_local_file(clip_cls, tmp_path, cli, demo_store):
    random = clip_cls(clip_cls.Params(model="clipclap-tiny-clip"))
    random._load()
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in random._model.state_dict().items()}
    torch.save(state, tmp_path / "tiny.bin")
    loaded = clip_cls(clip_cls.Params(model="clipclap-tiny-clip", checkpoint=str(tmp_path / "tiny.bin")))
    loaded._load()
    for key, value in loaded._model.state_dict().items():
        assert torch.equal(value, state[key]), key
    # through the user-facing option of `clipclap embed`
    store = tmp_path / "s.zarr"
    shutil.copytree(demo_store, store)
    r = cli("embed", "demo", "--store", store, *TINY, "-e", f"checkpoint={tmp_path / 'tiny.bin'}")
    assert r.exit_code == 0, r
    rows = FeatureStore(store).read_label_embeddings("demo", "clip")
    # extract's ENCODER:KEY=VALUE form names the same parameters; another encoder's is refused
    r = cli("embed", "demo", "--store", store, "-e", "clip:model=clipclap-tiny-clip",
            "-e", f"clip:checkpoint={tmp_path / 'tiny.bin'}")
    assert r.exit_code == 0, r
    assert np.array_equal(FeatureStore(store).read_label_embeddings("demo", "clip"), rows)
    r = cli("embed", "demo", "--store", store, *TINY, "-e", "clap:size=tiny")
    assert r.exit_code == 1 and r.stderr.strip() == (
        "Error: -e 'clap:size=tiny' sets the clap encoder; this command embeds with clip (--encoder clap to use it)")
    names = FeatureStore(store).info("demo")["prompt_names"]
    from clipclap_cli.data.datasets_toml import benchmarks_dir
    from clipclap_cli.data.label_embeddings import read_templates

    templates = read_templates(benchmarks_dir() / "UCF" / "prompts.toml", "clip_text")
    for c in (0, 17):  # two classes computed directly: normalise, average, normalise
        direct = loaded.encode_text([t.format(names[c]) for t in templates])
        mean = direct.mean(axis=0)
        assert np.allclose(rows[c], mean / np.linalg.norm(mean), atol=1e-6)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)


def test_named_tag_without_downloads_fails_fast(cli, demo_store):
    start = time.perf_counter()
    r = cli("embed", "demo", "--store", demo_store, "-e", "pretrained=openai")
    assert time.perf_counter() - start < 1.0
    assert r.exit_code == 1 and "open_clip_pytorch_model.bin" in r.stderr and "checkpoint=PATH" in r.stderr


def test_full_size_encoders_refuse_to_run_without_weights(cli, demo_store, pm, monkeypatch, tmp_path):
    """A forgotten checkpoint must not fill a store with untrained features: the published-size
    CLIP and CLAP refuse before any work unless random weights are asked for by name."""
    from clipclap_cli.errors import ClipclapError
    from clipclap_cli.plugins.registry import get_encoder

    monkeypatch.delenv("CLIPCLAP_CLIP_CHECKPOINT", raising=False)
    monkeypatch.delenv("CLIPCLAP_CLAP_CHECKPOINT", raising=False)
    before = sorted(p.name for p in demo_store.rglob("*"))

    def no_loading(self):
        raise AssertionError("the encoder loaded a model before refusing")

    for name, loaders in (("clip", ("_load",)), ("clap", ("_load", "_load_text"))):
        for loader in loaders:  # refused before loading anything: a load would fail the command
            monkeypatch.setattr(type(get_encoder(name, pm)), loader, no_loading)
    r = cli("embed", "demo", "--store", demo_store)
    assert r.exit_code == 1 and "has no weights" in r.stderr and "random_weights=true" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in demo_store.rglob("*")) == before
    for name, tiny in (("clip", {"model": "clipclap-tiny-clip"}), ("clap", {"size": "tiny"})):
        cls = type(get_encoder(name, pm))
        with pytest.raises(ClipclapError, match="has no weights"):
            cls(cls.Params()).check_weights()
        cls(cls.Params(random_weights=True)).check_weights()  # asked for: allowed
        cls(cls.Params(**tiny)).check_weights()  # tiny test models are random by design
        monkeypatch.setenv(f"CLIPCLAP_{name.upper()}_CHECKPOINT", str(tmp_path / "missing.pt"))
        with pytest.raises(ClipclapError, match="no such file"):
            cls(cls.Params(random_weights=True)).check_weights()  # a named checkpoint still has to exist
        monkeypatch.delenv(f"CLIPCLAP_{name.upper()}_CHECKPOINT")
