"""Scoring speed of `clipclap predict` (issue 42 point 7): 10,000 samples x 300 classes ranked
by a clipclap head (random weights and features) at the real widths (audio 1024, video 512,
label embeddings CLIP 512 + CLAP 1024), every class of every sample, as `predict -k 300` does.

    python benchmarks/bench_predict.py [--samples 10000] [--classes 300] [--top-k 300] [--json out.json]

Prints the seconds of the head's distances, of the ranking (β, stable sort, evaluation's
decision first) and of both (the median of 5 runs after one warm-up), with the CPU threads
torch uses, the CPU seconds of the whole (what other processes' load does not inflate) and the
load average; the target is under a second on two cores. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from types import SimpleNamespace

import torch

from clipclap_cli.api import FeatureDims
from clipclap_cli.plugins.manager import make_plugin_manager
from clipclap_cli.plugins.registry import create_head
from clipclap_cli.predict.scoring import distances, rank, rank_distances

DIMS = FeatureDims(audio=1024, video=512, text_parts=(("clip", 512), ("clap", 1024)))


def _median_seconds(call, repeats: int = 5) -> float:
    """Wall-clock seconds of `call`, the median of `repeats` after a warm-up (first-call allocations)."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cpu_seconds(call, repeats: int = 5) -> float:
    """CPU seconds of this process per `call` (all threads): on a machine other processes load,
    the wall clock measures them too; this does not (divide by the threads for an idle machine's wall time)."""
    call()
    start = time.process_time()
    for _ in range(repeats):
        call()
    return (time.process_time() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=300)
    parser.add_argument("--top-k", type=int, default=300)
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    head = create_head("clipclap", DIMS, {}, pm=make_plugin_manager(entrypoints=False)).eval()
    audio, video = torch.randn(args.samples, DIMS.audio), torch.randn(args.samples, DIMS.video)
    class_text = torch.randn(args.classes, 512 + 1024)
    seen = torch.arange(args.classes) < args.classes * 4 // 5
    model = SimpleNamespace(head=head, beta=0.3)
    dist = distances(head, audio, video, class_text)
    figures = {
        "samples": args.samples, "classes": args.classes, "top_k": args.top_k, "threads": torch.get_num_threads(),
        "distances_s": _median_seconds(lambda: distances(head, audio, video, class_text)),
        "ranking_s": _median_seconds(lambda: rank_distances(dist, seen, model.beta, args.top_k)),
        "total_s": _median_seconds(lambda: rank(model, audio, video, class_text, seen, args.top_k)),
        "total_cpu_s": _cpu_seconds(lambda: rank(model, audio, video, class_text, seen, args.top_k)),
        "load_average": os.getloadavg()[0],
    }
    for key, value in figures.items():
        print(f"{key:12} {value:.3f}" if isinstance(value, float) else f"{key:12} {value}")
    print(f"target: under 1 s for 10,000 x 300 -> {'met' if figures['total_s'] < 1 else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
