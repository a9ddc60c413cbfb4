"""Speed of the protocol on the demo benchmark (UCF-sized), next to its compute floor.

    python benchmarks/bench_protocol.py [--quick] [--json out.json] [--device cpu|cuda]

Measures
  * matmul throughput of this machine (fp32 GEMM, best of several shapes);
  * one stage-1 epoch (300 batches of 64 + validation over the bias grid), and its compute
    floor = the epoch's floating-point operations (counted with torch's FlopCounterMode over a
    real step and a real validation pass) / the measured matmul throughput; next to it, the time
    the epoch's own matrix multiplies (recorded shapes, batch 64) take when run alone;
  * three parts of the epoch measured apart: its GEMMs alone (above), the same epoch with a
    16-wide head (the cost of the step's operators through Python, dispatcher and autograd,
    with negligible arithmetic), and its 300 fused Adam steps alone (memory-bound); their sum
    is roughly what the epoch cannot go below on this machine without fusing the step;
  * the whole protocol: stage 1 at UCF's 20 epochs, stage 2, evaluation (skipped by --quick);
  * the 76-point bias-grid evaluation of 100,000 samples x 300 classes;
  * reading the demo dataset for training, with every check (checksums, finite values, split);
  * where an epoch's time goes (one epoch under torch.profiler, grouped by operator kind; CPU).
  * five seeds trained as one stack (`train --seeds 5`): a stage-1 epoch of all five against one
    seed's, the cost per run against the floor, and the peak memory of each (separate processes);
Targets on 2 CPU cores: epoch within 2x of its floor, protocol under 3 minutes, grid under 0.5 s;
five stacked seeds' stage-1 epoch within 1.5x of one seed's, per run within 2x of the floor, and
peak memory within 2x of one run's.
Figures are printed (and written as JSON), never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from clipclap_cli.api import FeatureDims
from clipclap_cli.data.datasets_toml import load_catalog
from clipclap_cli.data.ingest import generate_dataset
from clipclap_cli.data.protocol_data import load_protocol_data
from clipclap_cli.evaluate.evaluation import evaluate_head
from clipclap_cli.evaluate.metrics import evaluate_distances
from clipclap_cli.plugins.manager import make_plugin_manager
from clipclap_cli.plugins.registry import create_head
from clipclap_cli.protocol import TrainSettings
from clipclap_cli.runs.spec import RunSpec, store_dims
from clipclap_cli.store.feature_store import FeatureStore
from clipclap_cli.train.stacking import stacked_epoch
from clipclap_cli.train.stages import Callbacks, own_dropout_generator, train_run
from clipclap_cli.train.trainer import Trainer


def matmul_throughput(device: str) -> float:
    """Best fp32 GEMM rate (FLOP/s) over shapes like the trainer's and a large square one."""
    best = 0.0
    for m, k, n in ((64, 1536, 512), (2048, 1536, 512), (2048, 2048, 2048)):
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        for _ in range(3):
            a @ b
        reps = max(3, int(2e10 / (2 * m * k * n)))
        _sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t))
    return best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def epoch_flops(trainer: Trainer) -> float:
    """FLOPs of one epoch: batches x (loss forward + backward + replay forward) + validation."""
    head, cfg = trainer.head, trainer.config
    rows, targets = trainer.sampler.draw(cfg.batch_size)
    batch = trainer._batch(rows, targets, None)
    state = {k: v.clone() for k, v in head.state_dict().items()}
    with FlopCounterMode(display=False) as step:
        loss, _ = head.loss(batch, trainer.train_text)
        loss.backward()
        if cfg.replay_forward:
            head.replay_forward(batch)
    head.zero_grad(set_to_none=True)
    head.load_state_dict(state)  # undo the batch-norm statistics the count moved
    with FlopCounterMode(display=False) as val:
        evaluate_head(head, trainer.data, trainer.val)
    return step.get_total_flops() * cfg.batches_per_epoch + val.get_total_flops()


def matmul_only_seconds(trainer: Trainer, device: str) -> float:
    """Seconds the epoch's own matrix multiplies take when run alone (same shapes, same count):
    the part of the floor that batch-64 GEMMs cannot beat on this machine."""
    from torch.utils._python_dispatch import TorchDispatchMode

    shapes: list[tuple[int, int, int]] = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func.overloadpacket)
            if name.endswith("aten.mm"):
                shapes.append((args[0].shape[0], args[0].shape[1], args[1].shape[1]))
            elif name.endswith("aten.addmm"):
                shapes.append((args[1].shape[0], args[1].shape[1], args[2].shape[1]))
            return func(*args, **(kwargs or {}))

    head, cfg = trainer.head, trainer.config
    rows, targets = trainer.sampler.draw(cfg.batch_size)
    batch = trainer._batch(rows, targets, None)
    state = {k: v.clone() for k, v in head.state_dict().items()}
    with Record():
        loss, _ = head.loss(batch, trainer.train_text)
        loss.backward()
        if cfg.replay_forward:
            head.replay_forward(batch)
    head.zero_grad(set_to_none=True)
    head.load_state_dict(state)
    total = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        for _ in range(5):
            a @ b
        _sync(device)
        t = time.perf_counter()
        for _ in range(50):
            a @ b
        _sync(device)
        total += (time.perf_counter() - t) / 50
    return total * cfg.batches_per_epoch


def overhead_epoch_seconds(data, dims, cfg: TrainSettings, pm, epochs: int) -> float:
    """A stage-1 epoch of the same head and protocol at width 16, where the arithmetic is
    negligible: what the step's ~400 operators cost through Python, the dispatcher and autograd."""
    torch.manual_seed(0)
    head = create_head("clipclap", dims, {"hidden": 16, "dim_out": 16}, pm=pm).to(cfg.device)
    train_set, val = data.stage(1)
    trainer = Trainer(head, data, train_set, val, cfg)
    trainer.run_epoch()  # warm-up
    times = []
    for _ in range(epochs):
        _sync(cfg.device)
        t = time.perf_counter()
        trainer.run_epoch()
        _sync(cfg.device)
        times.append(time.perf_counter() - t)
    return min(times)


def adam_alone_seconds(trainer: Trainer, device: str) -> float:
    """An epoch's optimiser steps alone (fused Adam over a copy of the head's parameters):
    memory-bound, as every step reads and writes the parameters and both moments."""
    params = [p.detach().clone().requires_grad_() for p in trainer.head.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    cfg = trainer.config
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    for _ in range(5):
        opt.step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(cfg.batches_per_epoch):
        opt.step()
    _sync(device)
    return time.perf_counter() - t


#: Where a stage-1 epoch's time goes: aten operators grouped by what they do.
BREAKDOWN = {
    "matrix multiplies": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "optimiser (fused Adam)": ("aten::_fused_adam_",),
    "random numbers (dropout masks)": ("aten::uniform_", "aten::bernoulli_", "aten::random_"),
    "batch norm (forward, backward)": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
}


def epoch_breakdown(trainer: Trainer) -> dict[str, float]:
    """One real epoch under torch.profiler: seconds of self time per BREAKDOWN group, the other
    aten operators, and the rest of the wall time (Python, autograd, and the profiler itself)."""
    from torch.profiler import ProfilerActivity, profile

    # kineto (read when the profiler starts) logs each start and stop, and on a CUDA build of
    # torch without a GPU a harmless "ERROR: gpuGetDeviceCount failed"; level 6 keeps it quiet
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.run_epoch()
    wall = time.perf_counter() - t
    out = dict.fromkeys(BREAKDOWN, 0.0) | {"other aten operators": 0.0}
    for event in prof.key_averages():
        group = next((g for g, names in BREAKDOWN.items() if event.key in names), None)
        if group is None and not event.key.startswith("aten::"):
            continue
        out[group or "other aten operators"] += event.self_cpu_time_total / 1e6
    out["Python, autograd, profiler"] = wall - sum(out.values())
    return out


STACK = 5
"Seeds in the stacked measurements, as the protocol's mean ± std over five"


def stacked_trainers(data, dims, cfg: TrainSettings, pm, runs: int) -> list[Trainer]:
    """`runs` trainers of seeds 0.. as `train --seeds` builds a stack: each head from its seed,
    each with its own dropout generator (one trainer alone: the global generator)."""
    trainers = []
    train_set, val = data.stage(1)
    for seed in range(runs):
        torch.manual_seed(seed)
        head = create_head("clipclap", dims, {}, pm=pm).to(cfg.device)
        own = own_dropout_generator(data) if runs > 1 else None
        trainers.append(Trainer(head, data, train_set, val, dataclasses.replace(cfg, seed=seed), own))
    return trainers


def stacked_epoch_seconds(trainers: list[Trainer], device: str, epochs: int) -> float:
    """Best wall time of a stage-1 epoch of `trainers` (stacked when more than one), after a warm-up."""
    def one():
        if len(trainers) == 1:
            trainers[0].run_epoch()
        else:
            stacked_epoch(trainers)

    one()
    times = []
    for _ in range(epochs):
        _sync(device)
        t = time.perf_counter()
        one()
        _sync(device)
        times.append(time.perf_counter() - t)
    return min(times)


def memory_probe(runs: int, device: str, store_path: str) -> None:
    """(In a process of its own) one stage-1 epoch of `runs` stacked seeds on the demo data in
    `store_path`; prints, in MiB as JSON, the resident memory once the data and heads are loaded
    and its peak during the epoch (sampled every 5 ms: the process's lifetime peak would be the
    data loading's)."""
    import threading

    pm = make_plugin_manager(entrypoints=False)
    store = FeatureStore(store_path)
    data = load_protocol_data(store, "demo", "cls_split", device)
    raw = store_dims(store, "demo")
    dims = FeatureDims(raw["audio"], raw["video"], tuple(tuple(p) for p in raw["text_parts"]))
    trainers = stacked_trainers(data, dims, TrainSettings(batches_per_epoch=100, device=device), pm, runs)
    before = peak = _rss_mib()
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, _rss_mib())

    sampler = threading.Thread(target=sample)
    sampler.start()
    if runs == 1:
        trainers[0].run_epoch()
    else:
        stacked_epoch(trainers)
    done.set()
    sampler.join()
    print(json.dumps({"before_mib": before, "peak_mib": max(peak, _rss_mib())}))


def _rss_mib() -> float:
    """This process's resident memory now (Linux), in MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def stack_memory(device: str, store_path: Path) -> dict[str, float]:
    """Peak memory of one run's epoch and of a stack of STACK's, each in a fresh process."""
    out = {}
    for runs in (1, STACK):
        done = subprocess.run([sys.executable, __file__, "--memory-probe", str(runs), "--device", device,
                               "--store", str(store_path)], capture_output=True, text=True, check=True)
        probe = json.loads(done.stdout.strip().splitlines()[-1])
        out[f"peak_mib_{runs}"] = probe["peak_mib"]
        out[f"training_mib_{runs}"] = probe["peak_mib"] - probe["before_mib"]
    return out


def grid_eval_seconds(n: int = 100_000, classes: int = 300, unseen: int = 50) -> float:
    gen = torch.Generator().manual_seed(0)
    dist = torch.rand(n, classes, generator=gen) * 4
    targets = torch.randint(classes, (n,), generator=gen)
    ids = torch.randperm(classes, generator=gen)
    seen_ids, unseen_ids = ids[unseen:], ids[:unseen]
    evaluate_distances(dist[:1000], targets[:1000], seen_ids, unseen_ids)  # warm-up
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        evaluate_distances(dist, targets, seen_ids, unseen_ids)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the whole-protocol run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=2, help="stage-1 epochs timed (after one warm-up epoch)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--memory-probe", type=int, metavar="RUNS", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe, args.device, args.store)
        return 0

    pm = make_plugin_manager(entrypoints=False)
    tmp = Path(tempfile.mkdtemp(prefix="clipclap-bench-"))
    store = FeatureStore(tmp / "store.zarr")
    catalog = load_catalog(pm)
    generate_dataset(store, catalog, "demo", 0)
    entry = catalog.get("demo")
    loads = []
    for _ in range(3):  # reading the dataset with its checks (checksums, finite values, the split's classes)
        t = time.perf_counter()
        data = load_protocol_data(store, "demo", entry.split, args.device)
        loads.append(time.perf_counter() - t)
    dims_raw = store_dims(store, "demo")
    dims = FeatureDims(dims_raw["audio"], dims_raw["video"], tuple(tuple(p) for p in dims_raw["text_parts"]))

    figures: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "torch": torch.__version__,
    }
    figures["data_load_s"] = min(loads)
    throughput = matmul_throughput(args.device)
    figures["matmul_gflops"] = throughput / 1e9

    torch.manual_seed(entry.train_settings.seed)
    head = create_head("clipclap", dims, {}, pm=pm).to(args.device)
    train_set, val = data.stage(1)
    # UCF's schedule (20 epochs of 300 batches), not the demo entry's shorter one: the figures stay
    # comparable with those taken before the demo was shortened to 10 x 200 for three seeds
    cfg = TrainSettings(epochs=20, batches_per_epoch=300, lr=entry.train_settings.lr, device=args.device)
    trainer = Trainer(head, data, train_set, val, cfg)
    flops = epoch_flops(trainer)
    matmul_alone = matmul_only_seconds(trainer, args.device)
    trainer.run_epoch()  # warm-up
    times = []
    for _ in range(args.epochs):
        _sync(args.device)
        t = time.perf_counter()
        trainer.run_epoch()
        _sync(args.device)
        times.append(time.perf_counter() - t)
    epoch = min(times)
    floor = flops / throughput
    figures |= {"epoch_gflop": flops / 1e9, "epoch_s": epoch, "epoch_floor_s": floor, "epoch_ratio": epoch / floor,
                "epoch_matmuls_alone_s": matmul_alone, "epoch_matmuls_alone_ratio": matmul_alone / floor}
    overhead = overhead_epoch_seconds(data, dims, cfg, pm, args.epochs)
    adam = adam_alone_seconds(trainer, args.device)
    parts = matmul_alone + overhead + adam
    figures |= {"epoch_width16_s": overhead, "epoch_adam_alone_s": adam, "epoch_three_parts_s": parts,
                "epoch_three_parts_ratio": parts / floor}

    stack_cfg = dataclasses.replace(cfg, epochs=1)
    one_seed = stacked_epoch_seconds(stacked_trainers(data, dims, stack_cfg, pm, 1), args.device, args.epochs)
    stacked = stacked_epoch_seconds(stacked_trainers(data, dims, stack_cfg, pm, STACK), args.device, args.epochs)
    figures |= {"stack_runs": STACK, "stack_one_seed_epoch_s": one_seed, "stack_epoch_s": stacked,
                "stack_ratio": stacked / one_seed, "stack_per_run_floor_ratio": stacked / STACK / floor}
    figures |= {f"stack_{k}": v for k, v in stack_memory(args.device, tmp / "store.zarr").items()}

    if not args.quick:
        spec = RunSpec("demo", entry.split, "clipclap", {}, dims_raw, cfg)
        epochs = {"n": 0}
        t = time.perf_counter()
        results = train_run(tmp / "run", spec, store.location, data, (1, 2),
                            Callbacks(epoch_end=lambda stage, rec: epochs.__setitem__("n", epochs["n"] + 1)), pm)
        protocol = time.perf_counter() - t
        figures |= {"protocol_s": protocol, "protocol_epochs": epochs["n"],
                    "protocol_floor_s": epochs["n"] * floor, "protocol_ratio": protocol / (epochs["n"] * floor),
                    "demo_test_hm": results["test"]["hm"], "demo_test_zsl": results["test"]["zsl"]}

    figures["grid_100k_x_300_s"] = grid_eval_seconds()
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device == "cpu":  # last: the profiler's own memory must not count in the peak above
        figures["epoch_breakdown_s"] = epoch_breakdown(trainer)

    rows = [
        ("matmul throughput (fp32)", f"{figures['matmul_gflops']:.1f} GFLOP/s", "", ""),
        ("stage-1 epoch (300x64 + val)", f"{epoch:.2f} s", f"{floor:.2f} s ({flops / 1e9:.0f} GFLOP)",
         f"{epoch / floor:.2f}x (target <= 2x)"),
        ("  its GEMMs alone (batch-64 shapes)", f"{matmul_alone:.2f} s", "",
         f"{matmul_alone / floor:.2f}x of the floor"),
        ("  the same epoch at width 16", f"{overhead:.2f} s", "(operators' overhead)", ""),
        ("  its fused Adam steps alone", f"{adam:.2f} s", "(memory-bound)", ""),
        ("  GEMMs + overhead + Adam", f"{parts:.2f} s", "", f"{parts / floor:.2f}x of the floor"),
    ]
    rows += [
        (f"{STACK} seeds stacked: stage-1 epoch", f"{stacked:.2f} s", f"one seed: {one_seed:.2f} s",
         f"{stacked / one_seed:.2f}x of one seed (target <= 1.5x)"),
        ("  per run", f"{stacked / STACK:.2f} s", f"{floor:.2f} s", f"{stacked / STACK / floor:.2f}x (target <= 2x)"),
        (f"  peak memory in an epoch, {STACK} stacked", f"{figures['stack_peak_mib_5']:.0f} MiB",
         f"one run: {figures['stack_peak_mib_1']:.0f} MiB",
         f"{figures['stack_peak_mib_5'] / figures['stack_peak_mib_1']:.2f}x (target <= 2x)"),
        ("  of which training adds", f"{figures['stack_training_mib_5']:.0f} MiB",
         f"one run: {figures['stack_training_mib_1']:.0f} MiB", "over the process with data and heads loaded"),
    ]
    if "protocol_s" in figures:
        rows.append((f"whole protocol ({figures['protocol_epochs']} epochs + eval)", f"{figures['protocol_s']:.1f} s",
                     f"{figures['protocol_floor_s']:.1f} s", f"{figures['protocol_ratio']:.2f}x (target < 180 s)"))
    rows.append(("read the dataset, checked (demo)", f"{figures['data_load_s']:.3f} s", "",
                 "checksums, finite values, split classes"))
    rows.append(("grid eval 100k x 300, 76 betas", f"{figures['grid_100k_x_300_s']:.3f} s", "", "target < 0.5 s"))
    rows.append(("peak memory (RSS)", f"{figures['peak_rss_mib']:.0f} MiB", "", ""))
    print(f"clipclap protocol benchmark  device={figures['device']}  threads={figures['threads']}  "
          f"torch {torch.__version__}")
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "time", "compute floor", "ratio")
    w = [max(a, len(b)) for a, b in zip(w, header, strict=True)]
    for r in (header, tuple("-" * x for x in w), *rows):
        print("  ".join(c.ljust(x) for c, x in zip(r, w, strict=True)))
    if "epoch_breakdown_s" in figures:
        parts = figures["epoch_breakdown_s"]
        total = sum(parts.values())
        print(f"\nwhere a stage-1 epoch's time goes (one epoch under torch.profiler: {total:.2f} s, slower than\n"
              "unprofiled, as the profiler adds its own cost to every operator):")
        for name, seconds in parts.items():
            print(f"  {name:34s} {seconds:6.2f} s  {100 * seconds / total:5.1f} %")
    if "demo_test_hm" in figures:
        print(f"demo test: HM {100 * figures['demo_test_hm']:.2f}  ZSL {100 * figures['demo_test_zsl']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
