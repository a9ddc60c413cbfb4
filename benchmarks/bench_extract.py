"""Extraction throughput on generated videos.

    python benchmarks/bench_extract.py [--videos 48] [--json out.json] [--full] [--device cuda]

Measures decoding alone per frame recipe (one process), each encoder alone (items/s of
`encode_batch` at batch 16: the tiny test models, ViT-B/32 and HTS-AT with random weights) on
the chosen device, then `clipclap extract` end to end
(decoding in worker processes, batched inference, store
writes) in videos/s with the tiny encoders (decode-bound), and with --full the real
architectures (ViT-B/32 + the published-size HTS-AT, random weights) on the chosen device.
Each is run twice in this process and the second run gives the rate: the process's first
command also pays its imports (torch, open_clip and torchvision take seconds) and, on a GPU,
CUDA's start-up, which the benchmark reports apart as `first_command_extra_s`.
On a GPU it also reports ViT-B/32 images/s and HTS-AT clips/s at batch 64 in bf16 and fp16, with
the share of the GPU's measured matmul throughput their matrix multiplies reach. Figures are
printed (and written as JSON), never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from clipclap_cli.cli import run
from clipclap_cli.plugins.manager import make_plugin_manager
from media_files import write_video

DATASETS = """
[datasets.bench]
display_name = "benchmark videos"
kind = "video-folder"
split = "drawn"
dims = {{ video = {video}, audio = {audio}, clip = 32, clap = 32 }}
"""


def make_videos(root: Path, n: int) -> None:
    for i in range(n):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        write_video(folder / f"v{i:03d}.mp4", seconds=3.0, fps=25, size=(320, 240), channel=i % 3, freq=300 + 20 * i)


def extract(root: Path, tmp: Path, dims: tuple[int, int], params: list[str], device: str, workers: int) -> float:
    datasets = tmp / f"datasets-{dims[0]}.toml"
    datasets.write_text(DATASETS.format(video=dims[0], audio=dims[1]))
    store = tmp / f"store-{dims[0]}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    start = time.perf_counter()
    code = run(["extract", "bench", "--videos", str(root), "--datasets", str(datasets), "--store", str(store),
                "--workers", str(workers), "--device", device, "--batch-size", "16", *params],
               make_plugin_manager(entrypoints=False))
    assert code == 0
    return time.perf_counter() - start


def cold_and_warm(root: Path, tmp: Path, dims: tuple[int, int], params: list[str], device: str,
                  workers: int) -> tuple[float, float]:
    """Seconds of the same extraction run twice: the first pays one-time costs (the process's
    imports, the encoders' first calls on the device), the second gives the rate."""
    first = extract(root, tmp, dims, params, device, workers)
    return first, extract(root, tmp, dims, params, device, workers)


def _timed(fn, device: str, reps: int, warm_up: int = 2) -> float:
    """Seconds per call of `fn` (after `warm_up` calls), synchronising the GPU around the timing."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warm_up):
        fn()
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t) / reps


def gpu_figures(device: str = "cuda", batch: int = 64, reps: int = 10, size: int = 8192) -> dict:
    """ViT-B/32 images/s and HTS-AT clips/s at `batch` under autocast in bf16 and fp16 (as
    `extract --dtype` runs them: fp32 weights, half-precision matrix multiplies), each with the
    TFLOP/s its matrix multiplies reach (FLOPs counted by torch's FlopCounterMode) as a fraction
    of the GPU's own large-matmul throughput in that precision."""
    import open_clip
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from clipclap_plugins.clap_htsat import ClapAudio, HtsatConfig

    out: dict = {}
    model = open_clip.create_model("ViT-B-32-quickgelu").to(device).eval()
    clap = ClapAudio(HtsatConfig()).to(device).eval()
    images = torch.randn(batch, 3, 224, 224, device=device)
    waves = torch.randn(batch, 320000, device=device)
    with torch.no_grad():
        for tag, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            a = torch.randn(size, size, device=device, dtype=dtype)
            peak = 2 * size ** 3 / _timed(lambda a=a: a @ a, device, reps) / 1e12
            out[f"gpu_{tag}_matmul_tflops"] = peak
            for name, fn in (("vit_b32_images", lambda: model.encode_image(images)),
                             ("htsat_clips", lambda: clap(waves))):
                with torch.autocast(device.split(":")[0], dtype=dtype):
                    counter = FlopCounterMode(display=False)
                    with counter:
                        fn()
                    seconds = _timed(fn, device, reps)
                tflops = counter.get_total_flops() / seconds / 1e12
                out[f"{name}_per_s_{tag}"] = batch / seconds
                out[f"{name}_tflops_{tag}"] = tflops
                out[f"{name}_of_matmul_peak_{tag}"] = tflops / peak
    return out


ENCODERS = (("clip_tiny", "clip", {"model": "clipclap-tiny-clip"}), ("clap_tiny", "clap", {"size": "tiny"}),
            ("clip_vit_b32", "clip", {"random_weights": True}), ("clap_htsat", "clap", {"random_weights": True}))
"What `encoder_rates` times: the tiny test models, and the real architectures with random weights"


def encoder_rates(device: str, batch: int = 16, reps: int = 3) -> dict[str, float]:
    """Items/s of each encoder's `encode_batch` alone (preprocessing included, decoding not) on
    `device`, at `batch` items as `extract --batch-size` gives them: 320x240 RGB frames for video,
    10 s of 32 kHz audio for audio (fp32)."""
    import torch

    from clipclap_cli.params import build_params
    from clipclap_cli.plugins.registry import get_encoder
    from clipclap_cli.testing import example_items

    pm = make_plugin_manager(entrypoints=False)
    frames = [np.random.default_rng(i).integers(0, 256, (1, 240, 320, 3), dtype=np.uint8) for i in range(batch)]
    out = {}
    for label, name, values in ENCODERS:
        cls = type(get_encoder(name, pm))
        encoder = cls(build_params(cls.Params, {**values, "device": device}))
        items = frames if encoder.modality == "video" else example_items(encoder.modality, batch)
        with torch.no_grad():
            seconds = _timed(lambda e=encoder, i=items: e.encode_batch(i), device, reps)
        out[f"encode_{label}_items_per_s"] = batch / seconds
    return out


def decode_rates(root: Path) -> dict[str, float]:
    """Videos/s of decoding alone, in this process, per frame recipe (the released features'
    recipes decode every frame up to theirs, as their scripts did; clean seeks) and for audio."""
    from clipclap_cli.extract.media import audio_clip, recipe_frames
    from clipclap_cli.frame_recipes import recipes

    paths = sorted(root.rglob("*.mp4"))
    out = {}
    for name, recipe in recipes().items():
        start = time.perf_counter()
        for path in paths:
            recipe_frames(path, recipe)
        out[f"decode_frame_{name}_videos_per_s"] = len(paths) / (time.perf_counter() - start)
    start = time.perf_counter()
    for path in paths:
        audio_clip(path)
    out["decode_audio_videos_per_s"] = len(paths) / (time.perf_counter() - start)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="also the real ViT-B/32 + HTS-AT sizes (random weights)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="clipclap-bench-extract-"))
    root = tmp / "videos"
    make_videos(root, args.videos)
    figures = {"videos": args.videos, "device": args.device, "workers": args.workers}
    figures |= decode_rates(root)
    figures |= encoder_rates(args.device)
    first, warm = cold_and_warm(root, tmp, (32, 32), ["-e", "clip:model=clipclap-tiny-clip", "-e", "clap:size=tiny"],
                                args.device, args.workers)
    figures["tiny_videos_per_s"] = args.videos / warm
    figures["first_command_extra_s"] = first - warm
    if args.full:
        _, warm = cold_and_warm(root, tmp, (512, 1024),
                                ["-e", "clip:random_weights=true", "-e", "clap:random_weights=true"],
                                args.device, args.workers)
        figures["full_videos_per_s"] = args.videos / warm
    if args.device.startswith("cuda"):
        figures |= gpu_figures(args.device)
    print(f"clipclap extraction benchmark: {args.videos} generated videos (3 s, 320x240, 25 fps, stereo AAC), "
          f"{args.workers} decoding workers, device {args.device}")
    for key, value in figures.items():
        if isinstance(value, float):
            print(f"  {key:36s} {value:10.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
