"""The trainer and the run lifecycle on the demo benchmark: determinism, resume, errors, reports."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clipclap_cli.train.trainer import ClassBalancedSampler, improves
from helpers import FAST, FAST_RUN, SMOKE, SMOKE_RUN, interrupt_after, one_error_line, register_plugin, tree_digest
from helpers import train_fast as _train
from prestarted import clipclap, clipclap_run


def test_sampler_is_class_balanced_with_replacement():
    labels = torch.tensor([0] * 90 + [1] * 9 + [2])  # very unbalanced classes
    gen = torch.Generator().manual_seed(0)
    sampler = ClassBalancedSampler(labels, torch.tensor([0, 1, 2]), gen)
    rows, cls = sampler.draw(30000)
    assert torch.equal(labels[rows], cls)
    freq = torch.bincount(cls, minlength=3) / 30000
    assert torch.allclose(freq, torch.full((3,), 1 / 3), atol=0.015)
    within = torch.bincount(rows[cls == 1] - 90, minlength=9).float()
    assert within.min() > 0.8 * within.mean()  # uniform within the class
    _, other = sampler.draw(3000, exclude=cls[:3000])
    assert not torch.any(other == cls[:3000])


def test_best_epoch_rule_is_the_references():
    assert improves(None, 0.0)
    assert not improves(0.5, 0.5)  # ties: the earlier epoch stays
    assert improves(0.5, 0.6)
    assert improves(0.0, 0.0)  # a best HM of 0 counts as unset


def test_run_is_complete_and_far_above_chance(reference_run):
    results = json.loads((reference_run / "results.json").read_text())
    stage1 = json.loads((reference_run / "stage1" / "result.json").read_text())
    stage2_epochs = len((reference_run / "stage2" / "metrics.jsonl").read_text().splitlines())
    assert stage2_epochs == stage1["best_epoch"]  # stage 2 retrains for as many epochs as stage 1 chose (from 1)
    assert len((reference_run / "stage1" / "metrics.jsonl").read_text().splitlines()) == 3
    assert results["beta_star"] == pytest.approx(stage1["val_betas"]["both"] + 1e-10 / 3)
    test = results["test"]
    # 6 unseen test classes: ZSL chance is 1/6; the demo is learnable
    assert test["zsl"] > 0.5 and test["hm"] > 0.3, test
    assert not (reference_run / "stage1" / "checkpoint-last.safetensors").exists()
    assert len(results["test_curve"]["hm"]) == 76


@pytest.mark.slow
def test_same_seed_gives_byte_identical_results(cli, demo_store, trained_run, tmp_path):
    assert _train(cli, demo_store, tmp_path, schedule=SMOKE).exit_code == 0
    again = tmp_path / "demo" / SMOKE_RUN / "seed42"
    for name in ("results.json", "stage1/metrics.jsonl", "stage2/metrics.jsonl"):
        assert (again / name).read_bytes() == (trained_run / name).read_bytes(), name


@pytest.mark.slow
def test_other_seed_gives_other_results(cli, demo_store, reference_run, tmp_path):
    assert _train(cli, demo_store, tmp_path, "--seed", "7").exit_code == 0
    other = json.loads((tmp_path / "demo" / FAST_RUN / "seed7" / "results.json").read_text())
    assert other["test"] != json.loads((reference_run / "results.json").read_text())["test"]


@pytest.mark.slow
@pytest.mark.parametrize(("saves", "resumes"), [
    (2, "stage 1: resuming at epoch 3/3"),  # after stage 1's second epoch
    (4, "stage 2: resuming at epoch 2/3"),  # after stage 2's first (the run's best stage-1 epoch is its third)
], ids=["stage1", "stage2"])
def test_interrupted_run_resumes_to_the_same_results(cli, demo_store, reference_run, tmp_path, monkeypatch,
                                                     saves, resumes):
    interrupt_after(monkeypatch, saves)
    r = _train(cli, demo_store, tmp_path)
    assert r.exit_code == 130 and "Interrupted. Rerun the same command to resume." in r.stderr
    run = tmp_path / "demo" / FAST_RUN / "seed42"
    assert not (run / "results.json").exists()
    r = _train(cli, demo_store, tmp_path)
    assert r.exit_code == 0, r
    assert resumes in r.stderr
    assert (run / "results.json").read_bytes() == (reference_run / "results.json").read_bytes()
    for stage in ("stage1", "stage2"):
        assert (run / stage / "metrics.jsonl").read_bytes() == (reference_run / stage / "metrics.jsonl").read_bytes()


def _meta(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return json.loads(fh.metadata()["clipclap"])


def test_epochs_count_from_one_everywhere(cli, reference_run, tmp_path):
    """metrics.jsonl, the stages' result.json, the model files, results.json and the console all
    number the epochs 1, 2, 3: the best epoch each names is the one whose validation HM is best."""
    lines = [json.loads(x) for x in (reference_run / "stage1" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    hms = [x["val"]["hm"] for x in lines]
    best = 1 + max(range(3), key=lambda i: (hms[i], -i))  # the earliest of the highest, counted from 1
    stage1 = json.loads((reference_run / "stage1" / "result.json").read_text())
    assert stage1["best_epoch"] == lines[-1]["best_epoch"] == best
    assert stage1["best_val_hm"] == hms[best - 1]
    assert _meta(reference_run / "stage1" / "best.safetensors")["epoch"] == best
    assert _meta(reference_run / "stage1" / "final.safetensors")["epoch"] == 3
    stage2 = [json.loads(x) for x in (reference_run / "stage2" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in stage2] == list(range(1, best + 1))
    assert _meta(reference_run / "stage2" / "final.safetensors")["epoch"] == best
    assert json.loads((reference_run / "results.json").read_text())["best_epoch"] == best
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    r = cli("train", "--run", run)  # both stages reused: the console names the same epoch
    assert r.exit_code == 0 and f"stage 1: already trained (3 epochs, best epoch {best})" in r.stderr, r


def _as_format_1(record: dict) -> dict:
    """A record as clipclap 0.1 wrote it: epochs counted from 0, no run_format or units."""
    out = {k: v for k, v in record.items() if k not in ("run_format", "units", "epochs_done")}
    for key in ("epoch", "best_epoch"):
        if key in record:
            out[key] = record[key] - 1
    return out


@pytest.mark.slow
@pytest.mark.parametrize("left", ["a resume state", "a finished stage 1"])
def test_a_run_written_by_clipclap_0_1_resumes_to_the_same_results(cli, demo_store, reference_run, tmp_path,
                                                                   monkeypatch, left):
    """Runs of run format 1 (epochs counted from 0) still resume: their resume state and stage
    results are read as what they are, and the run ends with the bytes of an uninterrupted one."""
    from safetensors.torch import load_file, save_file

    run = tmp_path / "demo" / FAST_RUN / "seed42"
    if left == "a resume state":  # interrupted after stage 1's first epoch
        interrupt_after(monkeypatch, 1)
        assert _train(cli, demo_store, tmp_path).exit_code == 130
        ckpt = run / "stage1" / "checkpoint-last.safetensors"
        meta = _meta(ckpt)  # its metadata as 0.1 wrote it
        old = _as_format_1(meta) | {"epoch": meta["epochs_done"] - 1,
                                    "history": [_as_format_1(h) for h in meta["history"]]}
        save_file(load_file(str(ckpt)), str(ckpt), metadata={"clipclap": json.dumps(old)})
    else:  # stage 1 as 0.1 finished it: its result.json counts from 0
        assert _train(cli, demo_store, tmp_path, "--stage", "1").exit_code == 0
        result = run / "stage1" / "result.json"
        result.write_text(json.dumps(_as_format_1(json.loads(result.read_text()))))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "run_format"}))
    r = _train(cli, demo_store, tmp_path)
    assert r.exit_code == 0, r
    assert (run / "results.json").read_bytes() == (reference_run / "results.json").read_bytes()
    for stage in ("stage1", "stage2"):
        assert (run / stage / "metrics.jsonl").read_bytes() == (reference_run / stage / "metrics.jsonl").read_bytes()


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_results(demo_store, reference_run, tmp_path):
    cmd = ["train", "demo", "--store", str(demo_store), "--runs-dir", str(tmp_path), *FAST]
    metrics = tmp_path / "demo" / FAST_RUN / "seed42" / "stage1" / "metrics.jsonl"
    proc = clipclap(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert metrics.read_text().count("\n") < 3, "the run finished before it could be killed"
    done = clipclap_run(cmd)
    assert done.returncode == 0, done.stderr
    run = metrics.parent.parent
    assert (run / "results.json").read_bytes() == (reference_run / "results.json").read_bytes()


#: Three epochs (a resume after the second), of 2 batches: for checks on the run's course, not its numbers
THREE_SHORT = ("--epochs", "3", "--batches-per-epoch", "2")
THREE_SHORT_RUN = "clipclap,epochs=3,batches-per-epoch=2"


@pytest.mark.slow
def test_a_run_keeps_the_cpu_threads_it_started_with(cli, demo_store, tmp_path, monkeypatch):
    """A run's numbers depend on its CPU thread count at the last bit, so the run records it:
    interrupted under --threads N and resumed without the option, it trains every epoch with N
    threads and ends with the bytes of an uninterrupted --threads N run; another count is
    refused; the process's own setting is restored afterwards."""
    import clipclap_cli.train.stages as runs_mod

    default = torch.get_num_threads()
    other = 1 if default > 1 else 2
    seen: list[int] = []
    run_epoch = runs_mod.Trainer.run_epoch
    monkeypatch.setattr(runs_mod.Trainer, "run_epoch",
                        lambda self, *a, **k: seen.append(torch.get_num_threads()) or run_epoch(self, *a, **k))
    assert _train(cli, demo_store, tmp_path / "whole", "--threads", str(other), schedule=THREE_SHORT).exit_code == 0
    whole = tmp_path / "whole" / "demo" / THREE_SHORT_RUN / "seed42"
    assert json.loads((whole / "config.json").read_text())["threads"] == other

    interrupt_after(monkeypatch, 2)
    assert _train(cli, demo_store, tmp_path / "cut", "--threads", str(other), schedule=THREE_SHORT).exit_code == 130
    assert torch.get_num_threads() == default
    r = _train(cli, demo_store, tmp_path / "cut", "--threads", str(default), schedule=THREE_SHORT)
    assert r.exit_code == 1 and f"trains with {other} CPU thread(s)" in r.stderr
    assert _train(cli, demo_store, tmp_path / "cut", schedule=THREE_SHORT).exit_code == 0
    cut = tmp_path / "cut" / "demo" / THREE_SHORT_RUN / "seed42"
    assert (cut / "results.json").read_bytes() == (whole / "results.json").read_bytes()
    assert seen and set(seen) == {other} and torch.get_num_threads() == default
    r = cli("report", whole, cut)  # the same seed twice: one sample, by its newest run
    assert "one seed per entry" in r.stdout and "a seed trained twice counts once" in r.stdout, r
    assert f"left out: {whole}" in r.stderr, r


@pytest.mark.slow
def test_runs_side_by_side_match_the_same_runs_alone(cli, demo_store, tmp_path):
    """--jobs trains runs in worker processes with a share of the cores each: every run has the
    bytes of the same run trained alone with that many threads; a run that fails is one error
    line naming it, the others finish, and the command exits non-zero."""
    alone = _train(cli, demo_store, tmp_path / "alone", "--seeds", "2", "--threads", "1", "--no-stack",
                   schedule=SMOKE)
    assert alone.exit_code == 0, alone
    r = _train(cli, demo_store, tmp_path / "jobs", "--seeds", "2", "--jobs", "2", "--threads", "1", schedule=SMOKE)
    assert r.exit_code == 0, r
    assert "training 2 runs, 2 at a time" in r.stderr and "mean ± std over 2 seeds" in r.stdout
    for seed in (42, 43):
        a, b = (tmp_path / d / "demo" / SMOKE_RUN / f"seed{seed}" for d in ("alone", "jobs"))
        assert (b / "results.json").read_bytes() == (a / "results.json").read_bytes()
        assert json.loads((b / "config.json").read_text())["threads"] == 1
    clash = tmp_path / "clash"  # seed 43's folder holds a run with other settings (weight decay)
    shutil.copytree(tmp_path / "alone" / "demo" / SMOKE_RUN / "seed43", clash / "demo" / SMOKE_RUN / "seed43")
    config = json.loads((clash / "demo" / SMOKE_RUN / "seed43" / "config.json").read_text())
    config["spec"]["train"]["weight_decay"] = 0.5
    (clash / "demo" / SMOKE_RUN / "seed43" / "config.json").write_text(json.dumps(config))
    r = _train(cli, demo_store, clash, "--seeds", "2", "--jobs", "2", "--threads", "1", schedule=SMOKE)
    assert r.exit_code == 1
    assert "Error: clipclap seed 43: run" in r.stderr and "exists with different settings" in r.stderr
    assert "1 of 2 runs failed" in r.stderr
    assert (clash / "demo" / SMOKE_RUN / "seed42" / "results.json").read_bytes() == \
        (tmp_path / "alone" / "demo" / SMOKE_RUN / "seed42" / "results.json").read_bytes()
    # every run failing (seed 42 now trained with one thread): their error lines and the count, nothing else
    r = _train(cli, demo_store, clash, "--seeds", "2", "--jobs", "2", "--threads", "2", schedule=SMOKE)
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert r.exit_code == 1 and len(errors) == 3 and errors[2].startswith("Error: 2 of 2 runs failed"), r.stderr


@pytest.mark.slow
def test_side_by_side_workers_load_the_callers_plugins(cli, demo_store, tmp_path):
    """Workers train with the plugins of the command that started them, also a module registered
    by hand from a folder no longer on sys.path (the example plugin's head): the bytes of the
    same runs trained alone. A plugin that cannot be sent to a worker is one error line."""
    from example_plugin import manager_with_example

    pm = manager_with_example()
    settings = ("--head", "bilinear", "--seeds", "2", "--threads", "1", *SMOKE)
    r = _train(cli, demo_store, tmp_path / "jobs", *settings, "--jobs", "2", manager=pm)
    assert r.exit_code == 0, r
    assert _train(cli, demo_store, tmp_path / "alone", *settings, manager=pm).exit_code == 0
    for seed in (42, 43):
        a, b = (tmp_path / d / "demo" / SMOKE_RUN.replace("clipclap", "bilinear") / f"seed{seed}" / "results.json"
                for d in ("alone", "jobs"))
        assert a.read_bytes() == b.read_bytes()

    class LocalPlugin:  # a class defined in a function cannot be pickled
        pass

    pm.register(LocalPlugin(), "local")
    line = one_error_line(_train(cli, demo_store, tmp_path / "refused", *settings, "--jobs", "2", manager=pm))
    assert line.startswith("Error: plugin 'local' cannot be sent to worker processes (") and line.endswith(
        "register a module, or train without --jobs")
    assert not (tmp_path / "refused").exists()


def _workers_of(pid: int) -> list[int]:
    """The processes that `pid` started, and theirs (read from /proc): the workers are the
    children of the forkserver the command started."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except OSError:  # gone meanwhile
            continue
    found, new = set(), {pid}
    while new:
        new = {child for child, parent in parents.items() if parent in new} - found
        found |= new
    return sorted(found)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has stopped; only its exit status waits to be read)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_stopping_side_by_side_runs_stops_every_worker_and_they_resume(cli, demo_store, tmp_path):
    """A `train --jobs 2` command stopped three ways while its workers train: SIGTERM to the
    command alone (one 'Stopped' line, exit 143), kill -9 of the command alone (nothing can run in
    it: the workers see it die and exit), and Ctrl-C in a terminal (SIGINT to the process group:
    one 'Interrupted' line, exit 130). Each time no worker survives the command, and the next run
    of the same command resumes; the runs end with the bytes of runs trained without a stop. The
    stops fall in stage 1, so stage 1 alone is trained: its every epoch's losses and validation
    figures, and the best epoch that sets stage 2's length and starts it from the seed."""
    # a schedule of its own (which names the runs' folder): enough epochs that the three stops,
    # an epoch apart, land before the runs end; short epochs of small batches, since what is
    # compared is the bytes of stopped and unstopped runs, not what they learn
    epochs = 6
    alone = ["--seeds", "2", "--threads", "1", "--epochs", str(epochs), "--batches-per-epoch", "20",
             "--batch-size", "8", "--no-stack", "--stage", "1"]
    cmd = ["train", "demo", "--store", str(demo_store), "--runs-dir", str(tmp_path / "cut"), *alone, "--jobs", "2"]
    method = f"clipclap,epochs={epochs},batch-size=8,batches-per-epoch=20"
    metrics = [tmp_path / "cut" / "demo" / method / f"seed{s}" / "stage1" / "metrics.jsonl" for s in (42, 43)]

    def epochs_done() -> int:
        return sum(len(m.read_text().splitlines()) for m in metrics if m.exists())

    for how in ("SIGTERM", "SIGKILL", "SIGINT to the group"):
        before = epochs_done()
        # its own process group, which SIGINT reaches as a terminal's Ctrl-C would (the command's
        # SIGINT is Python's, even where the suite was started with SIGINT ignored)
        proc = clipclap(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        started = time.monotonic()
        while time.monotonic() < started + 120 and proc.poll() is None and epochs_done() < before + 1:
            time.sleep(0.05)  # the workers train: an epoch more is saved
        workers = _workers_of(proc.pid)
        assert proc.poll() is None and len(workers) >= 2, f"{how}: the command ended or has no workers"
        if how == "SIGINT to the group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, getattr(signal, how))
        _, stderr = proc.communicate(timeout=60)
        expected = {"SIGTERM": (143, "Stopped (SIGTERM). Rerun the same command to resume."), "SIGKILL": (-9, ""),
                    "SIGINT to the group": (130, "Interrupted. Rerun the same command to resume.")}[how]
        assert proc.returncode == expected[0] and expected[1] in stderr, (how, proc.returncode, stderr)
        left = time.monotonic() + 15
        while any(_running(w) for w in workers) and time.monotonic() < left:
            time.sleep(0.1)
        assert not [w for w in workers if _running(w)], f"{how}: workers survived the command"
    assert epochs_done() < 2 * epochs, "the runs finished before the last stop"
    done = clipclap_run(cmd)
    assert done.returncode == 0 and "resuming at epoch" in done.stderr, done.stderr
    whole = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "whole", *alone)  # one by one
    assert whole.exit_code == 0, whole
    for seed, name in itertools.product((42, 43), ("metrics.jsonl", "result.json")):
        a, b = (tmp_path / d / "demo" / method / f"seed{seed}" / "stage1" / name for d in ("cut", "whole"))
        assert a.read_bytes() == b.read_bytes(), (seed, name)


@pytest.mark.slow
def test_torchrun_spreads_the_runs_over_its_ranks(cli, demo_store, tmp_path):
    """`torchrun --nproc-per-node 2 -m clipclap_cli train ...` on the CPU (gloo): each rank
    trains a disjoint share of the runs into the shared runs folder and rank 0 prints one table
    of them all. A run failing on one rank fails the command (the other rank's runs are kept);
    the same command then trains only what is missing, and each run has the bytes of the same
    run trained alone (torchrun gives each rank one thread, hence --threads 1)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    schedule = ["--seeds", "3", "--epochs", "1", "--batches-per-epoch", "2"]
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "clipclap_cli", "train", "demo",
           "--store", str(demo_store), "--runs-dir", str(tmp_path / "ranks"), *schedule]
    runs = tmp_path / "ranks" / "demo" / "clipclap,epochs=1,batches-per-epoch=2"
    (runs / "seed43").mkdir(parents=True)
    (runs / "seed43" / ".clipclap-run").write_text('{"run_format": 2}')  # a run folder clipclap made,
    (runs / "seed43" / "config.json").write_text('{"spec": {}}')  # but its config cannot be read: rank 1's run fails
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "rank 0 of 2: 2 of 3 runs" in r.stderr and "rank 1 of 2: 1 of 3 runs" in r.stderr
    assert "1 of 3 runs failed on the ranks" in r.stderr and "seed43/config.json is not one" in r.stderr, r.stderr
    assert sorted(p.parent.name for p in runs.glob("*/results.json")) == ["seed42", "seed44"]  # rank 0's
    assert "mean ± std over 2 seeds" in r.stdout
    shutil.rmtree(runs / "seed43")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("finished stages are reused") == 2 and r.stdout.split("\n\n")[0].count("| clipclap") == 1
    assert "mean ± std over 3 seeds" in r.stdout
    alone = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "alone", "--seed", "43",
                "--threads", "1", *schedule[2:])
    assert alone.exit_code == 0, alone
    assert (runs / "seed43" / "results.json").read_bytes() == \
        (tmp_path / "alone" / runs.relative_to(tmp_path / "ranks") / "seed43" / "results.json").read_bytes()


def _store_with_clip_labels_only(demo_store, path):
    """The demo dataset and split in a new store, with CLIP label embeddings and no CLAP ones
    (what `clipclap embed --encoder clip` alone leaves after `extract`)."""
    from clipclap_cli.api import FeatureBundle
    from clipclap_cli.store.feature_store import FeatureStore

    src, out = FeatureStore(demo_store), FeatureStore(path)
    info, (ids, labels, partition) = src.info("demo"), src.read_videos("demo")
    bundle = FeatureBundle(info["classes"], info["prompt_names"], list(ids), labels,
                           {n: src.read_features("demo", n) for n in ("audio", "video")},
                           {"clip": src.read_label_embeddings("demo", "clip")}, partition)
    out.write_dataset("demo", bundle, {"kind": info["kind"]})
    split = src.read_split("demo", "cls_split")
    out.write_split("demo", "cls_split", split.indices, split.classes, {})
    return out


@pytest.mark.slow
def test_a_head_reads_only_the_label_embeddings_it_needs(cli, demo_store, tmp_path):
    """`-p labels=clip` trains on a dataset without CLAP label embeddings, to the numbers of the
    same run on the full store (the head reads only the CLIP columns there); the default head,
    which reads both, is refused in one line that names the command to run. Adding the CLAP
    embeddings later does not invalidate the run: it reads the label embeddings it started with."""
    store = _store_with_clip_labels_only(demo_store, tmp_path / "clip-only.zarr")
    before = tree_digest(tmp_path / "clip-only.zarr")
    for params in ([], ["-p", "modality=audio"]):
        line = one_error_line(_train(cli, store.location, tmp_path / "refused", *params))
        assert line == ("Error: head 'clipclap' reads " + ("clap" if params else "clip and clap")
                        + " label embeddings; dataset 'demo' in " + str(store)
                        + " has clip (run `clipclap embed demo --encoder clap` first)")
    assert not (tmp_path / "refused").exists() and tree_digest(tmp_path / "clip-only.zarr") == before
    for where, runs in ((store.location, "clip-only"), (demo_store, "full")):
        r = _train(cli, where, tmp_path / runs, "-p", "labels=clip", schedule=SMOKE)
        assert r.exit_code == 0, r
    method = "clipclap,labels=clip,epochs=1,batches-per-epoch=2"
    a, b = (tmp_path / d / "demo" / method / "seed42" for d in ("clip-only", "full"))
    assert (a / "results.json").read_bytes() == (b / "results.json").read_bytes()
    assert json.loads((a / "config.json").read_text())["spec"]["dims"]["text_parts"] == [["clip", 512]]
    # CLAP label embeddings added afterwards: the run still evaluates on what it was trained on
    from clipclap_cli.store.feature_store import FeatureStore

    store.write_label_embeddings("demo", "clap", FeatureStore(demo_store).read_label_embeddings("demo", "clap"), {})
    shutil.copy(a / "results.json", tmp_path / "first.json")
    assert cli("evaluate", a).exit_code == 0
    assert (a / "results.json").read_bytes() == (tmp_path / "first.json").read_bytes()


def test_a_head_must_name_known_label_embeddings_in_order(demo_store):
    from clipclap_cli.plugins.contracts import HeadContractError
    from clipclap_cli.runs.spec import check_label_parts, store_dims
    from clipclap_cli.store.feature_store import FeatureStore

    store = FeatureStore(demo_store)
    dims = store_dims(store, "demo")
    for parts in (("clap", "clip"), ("w2v",), ()):
        head = type("Head", (), {"head_id": "odd", "label_parts": classmethod(lambda cls, p, parts=parts: parts)})
        with pytest.raises(HeadContractError, match=r"label_parts\(\) naming some of clip, clap, in that order"):
            check_label_parts(store, "demo", dims, head, None)


@pytest.mark.slow
def test_a_run_trains_in_one_process_at_a_time(cli, demo_store, trained_run, tmp_path):
    """The same run started twice (two terminals, a job launched twice): the second is refused in
    one line while the first lives; a lock left by a process that died is taken over, and the
    run ends with the bytes of an uninterrupted one, without the lock."""
    import socket

    from clipclap_cli.runs.folder import RUN_MARKER

    run = tmp_path / "locked"
    run.mkdir()
    (run / RUN_MARKER).write_text('{"run_format": 2}')  # a run folder clipclap made (runs write only into runs)
    lock = run / "train.lock"
    lock.write_text(f"{socket.gethostname()} {os.getpid()}")  # a live process: this one
    line = one_error_line(cli("train", "demo", "--store", demo_store, "--run", run, *SMOKE))
    assert line == (f"Error: run {run} is being trained by another process (host and pid: {socket.gethostname()} "
                    f"{os.getpid()}); wait for it or stop it; if it died on another machine, remove {lock}")
    assert not (run / "stage1").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{socket.gethostname()} {dead.stdout.strip()}")
    assert cli("train", "demo", "--store", demo_store, "--run", run, *SMOKE).exit_code == 0
    assert (run / "results.json").read_bytes() == (trained_run / "results.json").read_bytes()
    assert not lock.exists()


@pytest.mark.slow
def test_a_head_named_twice_is_one_run(cli, demo_store, trained_run, tmp_path):
    """`--head clipclap,clipclap --jobs 2` asks for one run, not for two workers racing on one
    folder (which failed on config.json's atomic write)."""
    r = _train(cli, demo_store, tmp_path / "dup", "--head", "clipclap,clipclap", "--jobs", "2", schedule=SMOKE)
    assert r.exit_code == 0, r
    assert [p.name for p in (tmp_path / "dup" / "demo").iterdir()] == [SMOKE_RUN]
    results = tmp_path / "dup" / "demo" / SMOKE_RUN / "seed42" / "results.json"
    assert results.read_bytes() == (trained_run / "results.json").read_bytes()


def test_changed_settings_do_not_silently_mix(cli, demo_store, reference_run, tmp_path):
    r = cli("train", "demo", "--store", demo_store, "--run", reference_run, "--epochs", "5", *FAST[2:])
    assert r.exit_code == 1 and "exists with different settings (train.epochs)" in r.stderr


def test_run_written_before_a_setting_existed_still_resumes(cli, demo_store, reference_run, tmp_path):
    """Settings added later (here lr_scheduler, beta_grid) default to the earlier behaviour, and
    the schedule defaults recorded to name a run's folder do not count, so a run whose config.json
    predates them is the same run, not one 'with different settings'."""
    run = tmp_path / "old"
    shutil.copytree(reference_run, run)
    config = json.loads((run / "config.json").read_text())
    for key in ("lr_scheduler", "beta_grid"):
        del config["spec"]["train"][key]
    del config["spec"]["protocol_defaults"]  # the schedule's defaults, recorded since to name the folder
    (run / "config.json").write_text(json.dumps(config))
    r = cli("train", "demo", "--store", demo_store, "--run", run, *FAST)
    assert r.exit_code == 0, r
    assert (run / "results.json").read_bytes() == (reference_run / "results.json").read_bytes()
    # the report groups it with a run of the same settings written by this version
    twin = tmp_path / "twin"
    shutil.copytree(reference_run, twin)
    twin_config = json.loads((twin / "config.json").read_text())
    twin_config["spec"]["train"]["seed"] = 43
    (twin / "config.json").write_text(json.dumps(twin_config))
    twin_results = json.loads((twin / "results.json").read_text())
    twin_results["seed"] = 43  # another seed: a second sample (the same seed would count once)
    (twin / "results.json").write_text(json.dumps(twin_results))
    [row] = csv.DictReader(io.StringIO(cli("report", run, twin, "--format", "csv").stdout))
    assert row["n"] == "2"
    config["spec"]["train"]["weight_decay"] = 0.5  # a real difference still stops it
    (run / "config.json").write_text(json.dumps(config))
    assert "(train.weight_decay)" in one_error_line(cli("train", "demo", "--store", demo_store, "--run", run, *FAST))


def test_finished_run_is_reused_and_says_so(cli, demo_store, reference_run, tmp_path):
    """A finished run is not retrained; the command says so, and names an older clipclap."""
    run = tmp_path / "done"
    shutil.copytree(reference_run, run)
    config = json.loads((run / "config.json").read_text())
    config["clipclap_version"] = "0.0.1"
    (run / "config.json").write_text(json.dumps(config))
    before = tree_digest(run)
    r = cli("train", "demo", "--store", demo_store, "--run", run, *FAST)
    assert r.exit_code == 0, r
    assert "trained by clipclap 0.0.1" in r.stderr
    assert "stage 1: already trained (3 epochs, best epoch" in r.stderr and "stage 2: already trained" in r.stderr
    assert f"remove {run} to train them again" in r.stderr
    assert tree_digest(run) == before  # nothing retrained, results.json rewritten to the same bytes
    assert (run / "results.json").read_bytes() == (reference_run / "results.json").read_bytes()


def test_damaged_run_files_are_one_clear_line(cli, demo_store, reference_run, tmp_path):
    run = tmp_path / "damaged"
    shutil.copytree(reference_run, run)
    config = run / "config.json"
    good = json.loads(config.read_text())
    config.write_text(json.dumps({"spec": {"dataset": "demo"}, "clipclap_version": "9.9"}))
    line = one_error_line(cli("evaluate", run))
    assert "config.json is not one this clipclap can read (store: missing)" in line and "clipclap 9.9" in line
    config.write_text(json.dumps(good)[:40])  # cut short, as by a full disk
    assert "config.json is damaged (not valid JSON" in one_error_line(cli("evaluate", run))
    assert "config.json is damaged" in one_error_line(cli("train", "demo", "--store", demo_store, "--run", run, *FAST))
    config.write_text("[]")  # valid JSON, but not a run's
    for args in (("evaluate", run), ("train", "demo", "--store", demo_store, "--run", run, *FAST)):
        assert "config.json is not one this clipclap can read" in one_error_line(cli(*args))
    config.write_text(json.dumps(good))
    result = (run / "stage1" / "result.json").read_bytes()
    (run / "stage1" / "result.json").write_bytes(b"\xff\xfe")
    assert "result.json is damaged" in one_error_line(cli("evaluate", run))
    # a model cut short (a partial copy), and a resume state that cannot be read back
    (run / "stage1" / "result.json").write_bytes(result)
    best = run / "stage1" / "best.safetensors"
    best.write_bytes(best.read_bytes()[:100])
    assert one_error_line(cli("evaluate", run)).startswith(f"Error: {best} is damaged (SafetensorError: ")
    shutil.rmtree(run / "stage2")
    (run / "stage1" / "result.json").unlink()
    (run / "stage1" / "checkpoint-last.safetensors").write_bytes(b"\x08" + bytes(15))
    line = one_error_line(cli("train", "demo", "--store", demo_store, "--run", run, *FAST))
    assert "checkpoint-last.safetensors is damaged" in line and line.endswith(
        "remove its stage folder and rerun the same command to train that stage again")


def test_run_whose_store_moved_evaluates_with_store_option(cli, demo_store, reference_run, tmp_path, monkeypatch):
    run = tmp_path / "moved"
    shutil.copytree(reference_run, run)
    config = json.loads((run / "config.json").read_text())
    config["store"] = str(tmp_path / "gone.zarr")
    (run / "config.json").write_text(json.dumps(config))
    line = one_error_line(cli("evaluate", run))
    assert "gone.zarr, which is not there any more; pass --store" in line
    assert cli("evaluate", run, "--store", demo_store).exit_code == 0
    assert (run / "results.json").read_bytes() == (reference_run / "results.json").read_bytes()
    # --store is honoured even when it spells out the default's name
    (tmp_path / "clipclap.zarr").symlink_to(demo_store, target_is_directory=True)
    (run / "results.json").unlink()
    monkeypatch.chdir(tmp_path)
    r = cli("evaluate", run, "--store", "clipclap.zarr")
    assert r.exit_code == 0, r
    assert (run / "results.json").read_bytes() == (reference_run / "results.json").read_bytes()


def test_run_on_changed_data_is_refused_not_mixed(cli, demo_store, reference_run, tmp_path):
    """Resuming, reusing or evaluating a run on data that changed since it was trained is refused."""
    from clipclap_cli.store.feature_store import FeatureStore

    store = tmp_path / "s.zarr"
    shutil.copytree(demo_store, store)
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"store": str(store)}))
    assert cli("evaluate", run).exit_code == 0  # a copy of the same data is the same data
    fs = FeatureStore(store)  # as `clipclap embed` with other prompt templates would
    fs.write_label_embeddings("demo", "clip", fs.read_label_embeddings("demo", "clip")[::-1].copy(), {})
    before = tree_digest(run)
    for args in (["evaluate", run], ["train", "demo", "--store", store, "--run", run, *FAST]):
        line = one_error_line(cli(*args))
        assert "was trained on other 'demo' data (split 'cls_split') than the store now holds" in line
    assert tree_digest(run) == before
    # a run written before clipclap recorded the digest is taken as it is
    (run / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "data_digest"}
                                                | {"store": str(store)}))
    assert cli("evaluate", run).exit_code == 0


def test_run_is_evaluated_on_its_own_store_not_the_environments(cli, demo_store, reference_run, tmp_path,
                                                                 monkeypatch):
    """$CLIPCLAP_STORE is a default for commands that name no store; a run names its own."""
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    (run / "results.json").unlink()
    monkeypatch.setenv("CLIPCLAP_STORE", str(tmp_path / "elsewhere.zarr"))
    r = cli("evaluate", run)
    assert r.exit_code == 0, r
    assert (run / "results.json").read_bytes() == (reference_run / "results.json").read_bytes()
    assert not (tmp_path / "elsewhere.zarr").exists()


@pytest.mark.slow
def test_a_run_on_an_object_store_matches_the_folder_run(cli, trained_run, tmp_path):
    """The same data behind an fsspec URL (the in-memory file system, an object store) trains to
    byte-identical results; the run records the URL and `evaluate RUN` reads it back from there."""
    import fsspec

    bucket = f"clipclap-test-{os.getpid()}-{time.time_ns()}"
    url = f"memory://{bucket}/store.zarr"
    try:
        assert cli("demo", "--no-train", "--store", url).exit_code == 0
        r = _train(cli, url, tmp_path / "runs", schedule=SMOKE)
        assert r.exit_code == 0, r
        run = tmp_path / "runs" / "demo" / SMOKE_RUN / "seed42"
        assert json.loads((run / "config.json").read_text())["store"] == url
        assert (run / "results.json").read_bytes() == (trained_run / "results.json").read_bytes()
        (run / "results.json").unlink()
        assert cli("evaluate", run).exit_code == 0
        assert (run / "results.json").read_bytes() == (trained_run / "results.json").read_bytes()
    finally:
        fsspec.filesystem("memory").rm(f"/{bucket}", recursive=True)


def test_bad_inputs_fail_cleanly(cli, demo_store, reference_run, tmp_path):
    # unknown run
    assert "no such run" in one_error_line(cli("evaluate", tmp_path / "nope"))
    # a folder above a run, and a stage folder inside one: the message names the run
    runs, run = tmp_path / "runs", tmp_path / "runs" / "demo" / FAST_RUN / "seed42"  # the run alone in its folder
    shutil.copytree(reference_run, run)
    assert one_error_line(cli("evaluate", runs)) == (
        f"Error: {runs} is a folder of runs, not a run: evaluate one of them ({run}), "
        f"or tabulate them all with `clipclap report {runs}`")
    assert one_error_line(cli("evaluate", reference_run.parents[2])).startswith(
        f"Error: {reference_run.parents[2]} is a folder of runs, not a run: evaluate one of them ({reference_run} "
        "and 1 more)")
    assert one_error_line(cli("evaluate", reference_run / "stage1")) == (
        f"Error: {reference_run / 'stage1'} is inside the run {reference_run}: evaluate that folder")
    # stage 2 without stage 1, then evaluate of a run with stage 1 missing
    run = tmp_path / "fresh"
    line = one_error_line(cli("train", "demo", "--store", demo_store, "--run", run, "--stage", "2", *FAST))
    assert "no completed stage 1" in line and not run.exists()
    # evaluate a run whose stage 2, then whose stage 1, is missing
    assert cli("train", "demo", "--store", demo_store, "--run", run, "--stage", "1",
               "--epochs", "1", "--batches-per-epoch", "5").exit_code == 0
    assert "no completed stage 2" in one_error_line(cli("evaluate", run))
    shutil.rmtree(run / "stage1")
    assert "no completed stage 1" in one_error_line(cli("evaluate", run))
    # a dataset without the requested split: nothing written
    line = one_error_line(cli("train", "demo", "--store", demo_store, "--run", tmp_path / "r2",
                               "--split", "main_split"))
    assert "has no split 'main_split'" in line and not (tmp_path / "r2").exists()
    # unknown head and bad head parameter
    assert "Did you mean 'clipclap'" in one_error_line(
        cli("train", "demo", "--store", demo_store, "--head", "clipclp"))
    assert "unknown parameter 'widht'" in one_error_line(
        cli("train", "demo", "--store", demo_store, "-p", "widht=3", "--run", tmp_path / "r3"))
    # a checkpoint whose shapes do not fit the head
    state = {k: v for k, v in _safetensors(reference_run / "stage2" / "final.safetensors").items()}
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    torch.save({"model": state, "epoch": 2}, good)
    torch.save({"model": state | {"W_proj.fc.0.weight": torch.zeros(64, 100)}, "epoch": 2}, bad)
    line = one_error_line(cli("evaluate", "demo", "--store", demo_store, "--stage1", good, "--stage2", bad))
    assert "W_proj.fc.0.weight has shape (64, 100)" in line


def test_heads_that_cannot_be_built_are_one_clear_line(cli, demo_store, tmp_path):
    """Out-of-range head parameters, and a plugin head whose constructor raises, each give one
    error line before any run folder is written."""
    from dataclasses import dataclass

    from clipclap_cli.plugins.fusion_head import FusionHead
    from clipclap_cli.plugins.manager import make_plugin_manager

    assert one_error_line(_train(cli, demo_store, tmp_path / "runs", "-p", "dropout=1.5")) == (
        "Error: parameter dropout=1.5: expected 0 <= dropout < 1")

    class Broken(FusionHead):
        head_id = "broken"

        @dataclass(frozen=True)
        class Params:
            size: int = 4

        def __init__(self, dims, params):
            raise RuntimeError(f"no room for {params.size}")

    pm = make_plugin_manager(entrypoints=False)
    register_plugin(pm, "broken", heads=[Broken])
    for extra, said, size in (((), "its defaults", 4), (("-p", "size=5"), "{'size': 5}", 5)):
        line = one_error_line(_train(cli, demo_store, tmp_path / "runs", "--head", "broken", *extra, manager=pm))
        assert line == f"Error: head 'broken' cannot be built with {said} (RuntimeError: no room for {size})"
    assert not (tmp_path / "runs").exists()


def test_split_whose_training_class_lost_its_videos_is_one_clear_line(cli, demo_store, tmp_path):
    """A class of stage_1_train whose training videos are all missing (extraction failed on
    them) cannot be sampled: one line naming the class, before any run folder is written."""
    from clipclap_cli.store.feature_store import FeatureStore

    store = tmp_path / "s.zarr"
    shutil.copytree(demo_store, store)
    fs = FeatureStore(store)
    split, (_, labels, _) = fs.read_split("demo", "cls_split"), fs.read_videos("demo")
    lost = split.classes["stage_1_train"][3]
    train = split.indices["stage_1_train"]
    fs.write_split("demo", "holey", {**split.indices, "stage_1_train": train[labels[train] != lost]}, split.classes, {})
    line = one_error_line(_train(cli, store, tmp_path / "runs", "--split", "holey"))
    assert line == (f"Error: split 'holey' of dataset 'demo' has training classes without training videos "
                    f"(stage_1_train: {fs.info('demo')['classes'][lost]}), which class-balanced sampling cannot "
                    "draw: extract their videos, or write another split")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option, value, problem", [
    ("--epochs", "0", "must be at least 1, not 0"),  # not "0: the dataset's default", as it once was
    ("--lr", "-1e-4", "must be positive, not -0.0001"),
    ("--lr", "nan", "must be positive, not nan"),
    ("--batch-size", "0", "must be at least 1, not 0"),
    ("--batches-per-epoch", "0", "must be at least 1, not 0"),
    ("--seeds", "0", "must be at least 1, not 0"),
])
def test_out_of_range_settings_are_refused_before_any_write(cli, demo_store, tmp_path, option, value, problem):
    line = one_error_line(cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs", option, value))
    assert line == f"Error: {option} {problem}" and not (tmp_path / "runs").exists()


def _safetensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _same_in_percent(printed: dict, file: dict) -> bool:
    """`evaluate --json` prints percent where results.json holds fractions: the same figures."""
    assert printed["units"] == {"accuracy": "percent", "epoch": "counted from 1"}
    assert file["units"] == {"accuracy": "fraction", "epoch": "counted from 1"}
    want_test = {k: v if k == "beta" else 100 * v for k, v in file["test"].items()}
    want_classes = {part: {c: 100 * v for c, v in acc.items()} for part, acc in file["per_class_accuracy"].items()}
    assert printed["test"] == pytest.approx(want_test, rel=1e-12)
    assert printed["test"]["beta"] == file["test"]["beta"]
    for part, acc in want_classes.items():
        assert printed["per_class_accuracy"][part] == pytest.approx(acc, rel=1e-12)
    assert printed["test_curve"]["hm"] == pytest.approx([100 * v for v in file["test_curve"]["hm"]], rel=1e-12)
    assert printed["test_curve"]["beta"] == file["test_curve"]["beta"]
    assert printed["classes"] == file["classes"]  # counts, not accuracies
    return True


def _reference_layout(state: dict, epoch: int) -> dict:
    """What the reference's save_best_model writes: the epoch, the state dict, the optimizer's
    state (Adam after a step: per-parameter moments) and the metric's name."""
    params = [torch.nn.Parameter(v.clone()) for v in state.values() if v.is_floating_point()]
    optimizer = torch.optim.Adam(params, lr=7e-5, weight_decay=1e-5)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    return {"epoch": epoch, "model": state, "optimizer": optimizer.state_dict(), "metric": "score"}


def test_reference_checkpoints_evaluate_like_the_run(cli, demo_store, reference_run, tmp_path, monkeypatch):
    for stage, name in ((1, "best"), (2, "final")):
        state = _safetensors(reference_run / f"stage{stage}" / f"{name}.safetensors")
        torch.save(_reference_layout(state, epoch=1), tmp_path / f"s{stage}.pt")
    monkeypatch.setenv("CLIPCLAP_STORE", str(demo_store))  # checkpoints name no store: the environment's
    r = cli("evaluate", "demo", "--stage1", tmp_path / "s1.pt", "--stage2", tmp_path / "s2.pt", "--json")
    assert r.exit_code == 0, r
    got = json.loads(r.stdout)
    want = json.loads((reference_run / "results.json").read_text())
    assert _same_in_percent(got, want)
    assert got["checkpoint_epochs"] == [1, 1]
    # clipclap's own model files evaluate alike, with the epochs their metadata records
    own = reference_run / "stage1" / "best.safetensors", reference_run / "stage2" / "final.safetensors"
    r = cli("evaluate", "demo", "--stage1", own[0], "--stage2", own[1], "--json")
    assert r.exit_code == 0, r
    got = json.loads(r.stdout)
    assert _same_in_percent(got, want)
    best = json.loads((reference_run / "stage1" / "result.json").read_text())["best_epoch"]
    assert got["checkpoint_epochs"] == [best, best]  # stage 2 trains `best` epochs (counted from 1)


def test_reference_experiment_folders_evaluate_like_get_evaluation(cli, demo_store, reference_run, tmp_path):
    """`--stage1/--stage2` also take the reference's experiment folders, as its get_evaluation.py's
    --load_path_stage_A/B: stage 1 is `<Model>_score.pt`, stage 2 `checkpoints/*_ckpt_<epoch - 1>.pt`
    with stage 1's recorded epoch. Every other file in the folders holds a wrong model, so picking
    any of them would change the figures."""
    best = json.loads((reference_run / "stage1" / "result.json").read_text())["best_epoch"] - 1  # as an index
    right = {stage: _safetensors(reference_run / f"stage{stage}" / f"{name}.safetensors")
             for stage, name in ((1, "best"), (2, "final"))}
    wrong = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in right[1].items()}
    a, b = tmp_path / "Oct23_08-07-58_952980_host", tmp_path / "Oct23_08-59-42_055708_host"
    for folder in (a, b):
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "args.pkl").write_bytes(b"not read")
        torch.save(_reference_layout(wrong, epoch=1), folder / "ClipClap_model_loss.pt")
    torch.save(_reference_layout(right[1], epoch=best + 1), a / "ClipClap_model_score.pt")
    torch.save(_reference_layout(wrong, epoch=1), b / "ClipClap_model_score.pt")
    for e in range(best + 2):  # stage 2 trains best + 1 epochs; one more file that must not be read
        model = right[2] if e == best else wrong
        torch.save(_reference_layout(model, epoch=e + 1), b / "checkpoints" / f"ClipClap_model_score_ckpt_{e}.pt")
    r = cli("evaluate", "demo", "--stage1", a, "--stage2", b, "--store", demo_store, "--json")
    assert r.exit_code == 0, r
    got, want = json.loads(r.stdout), json.loads((reference_run / "results.json").read_text())
    assert _same_in_percent(got, want)
    stage2_file = b / "checkpoints" / f"ClipClap_model_score_ckpt_{best}.pt"
    assert got["checkpoints"] == {"stage1": str(a / "ClipClap_model_score.pt"), "stage2": str(stage2_file)}
    assert r.stderr.splitlines()[0] == (f"stage 1: {a / 'ClipClap_model_score.pt'} (epoch {best + 1}); "
                                        f"stage 2: {stage2_file} (epoch {best + 1})")
    # clipclap's own stage-1 file records the epoch index: the same stage-2 checkpoint is chosen
    r = cli("evaluate", "demo", "--stage1", reference_run / "stage1" / "best.safetensors", "--stage2", b,
            "--store", demo_store, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["checkpoints"]["stage2"] == str(stage2_file), r
    # a folder without the file it should hold: one line, naming the pattern
    stage2_file.unlink()
    line = one_error_line(cli("evaluate", "demo", "--stage1", a, "--stage2", b, "--store", demo_store))
    assert line.startswith(f"Error: {b}: no checkpoints/*_ckpt_{best}.pt (stage 2's checkpoint of the epoch")
    line = one_error_line(cli("evaluate", "demo", "--stage1", tmp_path, "--stage2", b, "--store", demo_store))
    assert line.startswith(f"Error: {tmp_path}: no *_score.pt (the best model by validation HM")


def test_checkpoint_evaluation_shows_the_papers_figures(cli, demo_store, reference_run, tmp_path):
    """Evaluating checkpoints with the head's defaults (the published models' setting) prints the
    paper's figures for that head and dataset below the measured ones; with -p, or for a dataset
    without published results, it does not."""
    for stage, name in ((1, "best"), (2, "final")):
        torch.save({"model": _safetensors(reference_run / f"stage{stage}" / f"{name}.safetensors"), "epoch": 1},
                   tmp_path / f"s{stage}.pt")
    user = tmp_path / "paper.toml"
    user.write_text("[datasets.demo.published]\n"
                    "clipclap = { hm = 55.97, zsl = 46.96, seen = 77.14, unseen = 43.91 }\n")
    evaluate = ("evaluate", "demo", "--stage1", tmp_path / "s1.pt", "--stage2", tmp_path / "s2.pt",
                "--store", demo_store)
    lines = cli(*evaluate, "--datasets", user).stderr.strip().splitlines()
    assert lines[0].startswith("demo: S ") and lines[1:] == ["the paper: S 77.14  U 43.91  HM 55.97  ZSL 46.96"]
    for extra in (("--datasets", user, "-p", "dropout=0.1"), ()):
        r = cli(*evaluate, *extra)
        assert r.exit_code == 0 and len(r.stderr.strip().splitlines()) == 1 and "paper" not in r.stderr, r


@pytest.mark.slow
def test_report_groups_seeds_as_mean_and_std(cli, stacked_runs, tmp_path):
    """Two seeds of one method (the session's FAST runs, seeds 42 and 43) are one row, mean ± std."""
    runs = [stacked_runs / f"seed{s}" for s in (42, 43)]
    hm = [100 * json.loads((p / "results.json").read_text())["test"]["hm"] for p in runs]
    r = cli("report", stacked_runs, "--format", "csv", "--plots", tmp_path / "plots")
    assert r.exit_code == 0, r
    [cells] = csv.DictReader(io.StringIO(r.stdout))
    assert cells["method"] == "clipclap (epochs=3, batches-per-epoch=15)"  # the schedule is not the paper's
    assert cells["n"] == "2" and cells["seeds"] == "42 43"
    assert float(cells["hm_mean"]) == pytest.approx(statistics.fmean(hm), abs=1e-4)
    assert float(cells["hm_std"]) == pytest.approx(statistics.stdev(hm), abs=1e-4)
    md = cli("report", stacked_runs, "--su").stdout
    assert f"{statistics.fmean(hm):.2f} ± {statistics.stdev(hm):.2f}" in md
    assert "| demo HM |" in md.replace("demo S | demo U | ", "")
    assert "mean ± std over 2 seeds" in md
    for fmt, marker in (("latex", r"\begin{tabular}"), ("html", "<table>"), ("json", '"n": 2')):
        assert marker in cli("report", stacked_runs, "--format", fmt).stdout
    from PIL import Image

    pngs = sorted((tmp_path / "plots").iterdir())
    assert len(pngs) == 2 * 3 + 1 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    for png in pngs:  # each figure says what it shows, in its title and axis labels (kept as PNG text too)
        text = Image.open(png).text
        x, y = text["Description"].split("; y: ")
        assert x.startswith("x: ") and len(x) > 4 and y
        if png.name.startswith("comparison"):
            assert text["Title"] == "Test S, U, HM and ZSL per method and dataset: mean ± std over 2 seeds"
            assert y == "accuracy (%)"
            continue
        seed = png.name.split("seed")[1].split("-")[0]
        assert f"on demo (cls_split), seed {seed}" in text["Title"] and "clipclap" in text["Title"]
    kinds = sorted(p.name.rsplit("seed", 1)[1].split("-", 1)[1] for p in pngs if not p.name.startswith("comparison"))
    assert kinds == ["calibration.png"] * 2 + ["per-class.png"] * 2 + ["training.png"] * 2


def test_report_published_adds_the_papers_rows(cli, reference_run, tmp_path):
    """--published puts the dataset's published results (datasets.toml, here a user file's) below
    the run of the same head, other heads' after; a dataset without them gets a note on stderr
    and the usual table."""
    plain = cli("report", reference_run, "--su")
    r = cli("report", reference_run, "--su", "--published")
    assert r.exit_code == 0 and r.stdout == plain.stdout, r
    assert r.stderr.strip() == "no published results for demo (datasets.toml: [datasets.NAME.published])"
    user = tmp_path / "paper.toml"
    user.write_text("[datasets.demo.published]\nmodel-x = { hm = 12.5, zsl = 3 }\n"
                    "clipclap = { hm = 50.25, zsl = 40.5, seen = 60, unseen = 43.2 }\n")
    test = json.loads((reference_run / "results.json").read_text())["test"]
    r = cli("report", reference_run, "--su", "--published", "--datasets", user)
    assert r.exit_code == 0, r
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "Method" not in line]
    ours = " | ".join(f"{100 * test[m]:.2f}" for m in ("seen", "unseen", "hm", "zsl"))
    assert rows == [f"| clipclap (epochs=3, batches-per-epoch=15) | 1 | {ours} |",  # n: one seed
                    "| clipclap (paper) | – | 60.00 | 43.20 | 50.25 | 40.50 |",  # below the head's runs, any settings
                    "| model-x (paper) | – | – | – | 12.50 | 3.00 |"]
    assert r.stdout.rstrip().endswith("Percent; one seed per entry; '(paper)': the published results.")
    csv_rows = cli("report", reference_run, "--format", "csv", "--published", "--datasets", user).stdout.splitlines()
    assert csv_rows[3] == ("model-x (paper),demo,0,,,," + ",,,,,," * 2 + "12.5000,,,,,," + "3.0000,,,,,"
                           + ",,,,,")  # ci95_few_seeds and the four p caveats: empty for a published row
    assert csv_rows[0].endswith(",ci95_few_seeds,seen_p_caveat,unseen_p_caveat,hm_p_caveat,zsl_p_caveat")


def test_report_names_the_runs_it_leaves_out(cli, reference_run, tmp_path):
    """A searched folder's runs without results (training, interrupted) are named on stderr, not
    silently left out; a folder holding only such runs says so in its error."""
    import shutil

    runs = tmp_path / "runs" / "demo" / "clipclap"
    done, pending = runs / "seed42", runs / "seed43"
    shutil.copytree(reference_run, done)
    pending.mkdir()
    shutil.copy(reference_run / "config.json", pending / "config.json")  # as a run whose training just began
    r = cli("report", tmp_path / "runs")
    assert r.exit_code == 0 and r.stdout == cli("report", done).stdout, r
    assert r.stderr.strip() == f"not in the table: 1 run(s) without results yet ({pending})"
    shutil.rmtree(done)
    line = one_error_line(cli("report", tmp_path / "runs"))
    assert line == (f"Error: no evaluated runs under {tmp_path / 'runs'} "
                    "(1 run(s) there have no results yet: finish them with `clipclap train`)")


def test_report_errors(cli, reference_run, tmp_path):
    assert "no such run" in one_error_line(cli("report", tmp_path / "nothing"))
    assert "no evaluated runs" in one_error_line(cli("report", tmp_path))
    assert "unknown format 'pdf'" in one_error_line(cli("report", tmp_path, "--format", "pdf"))
    # an output the system refuses (a folder inside a file) is the shell's line, not a traceback
    (tmp_path / "a-file").write_text("")
    for option in ("--plots", "--output"):
        line = one_error_line(cli("report", reference_run, option, tmp_path / "a-file" / "out"))
        assert line.startswith(f"Error: {tmp_path / 'a-file'}"), line
        assert line.endswith((": Not a directory", ": File exists")), line  # as mkdir meets it


def test_training_leaves_the_store_untouched(cli, demo_store, tmp_path):
    before = tree_digest(demo_store)
    assert cli("train", "demo", "--store", demo_store, "--run", tmp_path / "r", "--stage", "1",
               "--epochs", "1", "--batches-per-epoch", "5").exit_code == 0
    assert tree_digest(demo_store) == before
    assert json.loads((tmp_path / "r" / "stage1" / "result.json").read_text())["best_epoch"] == 1  # the only one


@pytest.mark.slow
def test_every_head_trains_both_stages_above_chance(cli, demo_store, tmp_path):
    """`--head all`: each registered head through stage 1, stage 2 and the test evaluation."""
    from clipclap_cli.plugins.registry import list_heads

    r = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path, "--head", "all",
            "--epochs", "2", "--batches-per-epoch", "20", "--batch-size", "32", "--lr", "1e-3")
    assert r.exit_code == 0, r
    heads = list_heads()
    for head in heads.names():
        if heads.get(head).training_free:  # zeroshot: the schedule is not its to take, nor its folder's name
            [run] = (tmp_path / "demo").glob(f"{head}/seed42")
            assert f"| {head} |" in r.stdout
        else:  # the schedule departs from each head's defaults, which differ: each run's name says how
            [run] = (tmp_path / "demo").glob(f"{head},*epochs=2*/seed42")
            assert f"| {head} (epochs=2, " in r.stdout
        results = json.loads((run / "results.json").read_text())
        # 6 unseen test classes: chance ZSL is 1/6; 42 seen / 6 unseen: chance HM is about 0.04
        assert results["test"]["zsl"] > 1 / 6 + 0.05 and results["test"]["hm"] > 0.1, (head, results["test"])


def test_head_training_defaults_sit_between_dataset_and_command_line(demo_store, tmp_path):
    from clipclap_cli.data.datasets_toml import load_catalog
    from clipclap_cli.plugins.manager import make_plugin_manager
    from clipclap_cli.runs.plan import RunRequest
    from clipclap_cli.store.feature_store import FeatureStore
    from clipclap_cli.train.scheduler import planned

    pm = make_plugin_manager(entrypoints=False)
    entry = load_catalog(pm).get("demo")
    store = FeatureStore(demo_store)

    def cfg(head, **kw):
        request = RunRequest(heads=(head,), epochs=kw.get("epochs"), lr=kw.get("lr"))
        [(_, spec)] = planned(store, entry, request, tmp_path, pm=pm).plan
        return spec.train

    assert (cfg("clipclap").lr, cfg("clipclap").epochs, cfg("clipclap").weight_decay) == (7e-5, 10, 1e-5)
    cj = cfg("cjme")
    assert (cj.lr, cj.epochs, cj.batch_size, cj.batches_per_epoch, cj.weight_decay) == (1e-3, 50, 256, 500, 0.0)
    assert cfg("avca").weight_decay == 1e-5
    assert cfg("cjme", epochs=3, lr=0.5).lr == 0.5 and cfg("cjme", epochs=3).epochs == 3


def test_dataset_head_training_settings_sit_between_head_and_command_line(demo_store, tmp_path):
    """datasets.toml `head_train.<head>` (TCaF's VGGSound lr 6e-5 without the scheduler) beats the
    head's defaults and loses to the command line; only a departure from it names the run."""
    from clipclap_cli.data.datasets_toml import load_catalog
    from clipclap_cli.plugins.manager import make_plugin_manager
    from clipclap_cli.runs.plan import RunRequest
    from clipclap_cli.store.feature_store import FeatureStore
    from clipclap_cli.train.scheduler import planned

    pm = make_plugin_manager(entrypoints=False)
    assert load_catalog(pm).get("vggsound").head_train["tcaf"] == {"lr": 6e-5, "lr_scheduler": False}
    user = tmp_path / "mine.toml"
    user.write_text('[datasets.demo.head_train]\ntcaf = { lr = 6e-5, lr_scheduler = false }\n')
    entry = load_catalog(pm, user).get("demo")
    store = FeatureStore(demo_store)

    def plan(head, **kw):
        [(path, spec)] = planned(store, entry, RunRequest(heads=(head,), **kw), tmp_path, pm=pm).plan
        return path.relative_to(tmp_path).as_posix(), spec.train

    path, train = plan("tcaf")
    assert (train.lr, train.lr_scheduler, train.epochs) == (6e-5, False, 50) and path == "demo/tcaf/seed42"
    path, train = plan("tcaf", lr=1e-3, lr_scheduler=True)
    assert (train.lr, train.lr_scheduler) == (1e-3, True) and path == "demo/tcaf,lr=0.001,lr-scheduler/seed42"
    assert plan("tcaf", lr=6e-5)[0] == "demo/tcaf/seed42"  # the default, given: still the faithful run
    path, train = plan("clipclap")
    assert (train.lr, train.lr_scheduler) == (7e-5, True) and path == "demo/clipclap/seed42"
    assert plan("clipclap", lr_scheduler=False)[0] == "demo/clipclap,no-lr-scheduler/seed42"


def test_a_run_records_where_each_training_setting_came_from(cli, demo_store, tmp_path):
    """Settings are merged once; config.json says, per setting, which layer gave its value: here
    the command line (--epochs), the head (avca's lr and batch size, datasets.toml's demo does
    not set weight decay: avca does), the dataset (seed) and the protocol (the bias grid)."""
    r = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path, "--head", "avca", "--epochs", "1",
            "--batches-per-epoch", "2", "--stage", "1")
    assert r.exit_code == 0, r
    [config] = tmp_path.rglob("config.json")
    sources = json.loads(config.read_text())["settings_sources"]
    from clipclap_cli.data.datasets_toml import project_datasets_toml

    dataset = f"{project_datasets_toml()} [datasets.demo] train"
    assert sources == {"epochs": "command line", "batches_per_epoch": "command line", "device": "command line",
                       "lr": "head avca (train_defaults)", "batch_size": "head avca (train_defaults)",
                       "weight_decay": "head avca (train_defaults)", "seed": dataset,
                       "lr_scheduler": "protocol", "replay_forward": "protocol", "beta_grid": "protocol"}


def test_a_head_with_bad_training_defaults_is_named(pm):
    """A head's `train_defaults` are checked like the datasets file's: an unknown setting or a
    bad value leaves the head's plugin out, with a reason naming the head and the setting."""
    import dataclasses

    from clipclap_cli import hookimpl
    from clipclap_cli.plugins.fusion_head import FusionHead
    from clipclap_cli.plugins.manager import failures
    from clipclap_cli.plugins.registry import list_heads

    for defaults, problem in (({"learning_rate": 1e-3}, "train_defaults.learning_rate: unknown"),
                              ({"lr": -1.0}, "train_defaults.lr: must be positive"),
                              ({"epochs": "many"}, "train_defaults: ")):
        bad = type("Bad", (FusionHead,), {"head_id": "bad-defaults", "train_defaults": defaults,
                                          "Params": dataclasses.make_dataclass("Params", [], frozen=True)})

        class Plugin:
            @hookimpl
            def register_heads(self, register, _head=bad):
                register(_head)

        pm.register(Plugin(), "bad")
        assert "bad-defaults" not in list_heads(pm) and "clipclap" in list_heads(pm)  # left out, named
        assert f"fusion head 'bad-defaults': {problem}" in failures(pm)[-1].reason


def test_misspelt_head_in_datasets_toml_is_one_clear_error(cli, demo_store, tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[datasets.demo.head_train]\ntcfa = { lr = 6e-5 }\n')
    line = one_error_line(cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs",
                               "--datasets", user))
    assert "[datasets.demo] head_train.tcfa" in line and "'tcaf'" in line
    assert not (tmp_path / "runs").exists()


def test_bias_grid_and_scheduler_are_protocol_options(cli, demo_store, tmp_path):
    r = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path, "--epochs", "2",
            "--batches-per-epoch", "10", "--beta-grid", "0:3:16", "--no-lr-scheduler")
    assert r.exit_code == 0, r
    run = tmp_path / "demo" / "clipclap,epochs=2,batches-per-epoch=10,beta-grid=0:3:16,no-lr-scheduler" / "seed42"
    results = json.loads((run / "results.json").read_text())
    assert results["grid"] == {"start": 0.0, "stop": 3.0, "steps": 16}
    assert len(results["test_curve"]["beta"]) == 16 and results["test_curve"]["beta"][-1] == pytest.approx(3.0)
    assert round(results["val"]["beta"] / 0.2, 4) == round(results["val"]["beta"] / 0.2)  # on AVCA's 0.2 steps
    assert "| clipclap (epochs=2, batches-per-epoch=10, beta-grid=0:3:16, no-lr-scheduler) |" in r.stdout
    assert "--beta-grid '0:x'" in one_error_line(cli("train", "demo", "--store", demo_store, "--beta-grid", "0:x"))


def test_no_lr_scheduler_never_steps_it(demo_store):
    from clipclap_cli.api import FeatureDims
    from clipclap_cli.data.protocol_data import load_protocol_data
    from clipclap_cli.plugins.registry import create_head
    from clipclap_cli.protocol import TrainSettings
    from clipclap_cli.store.feature_store import FeatureStore
    from clipclap_cli.train.trainer import Trainer

    data = load_protocol_data(FeatureStore(demo_store), "demo", "cls_split")
    train, val = data.stage(1)
    for enabled, steps in ((True, 2), (False, 0)):
        trainer = Trainer(create_head("clipclap", FeatureDims(), {}), data, train, val,
                          TrainSettings(epochs=2, lr=1e-4, batches_per_epoch=2, lr_scheduler=enabled))
        trainer.run_epoch()
        trainer.run_epoch()
        assert trainer.scheduler.last_epoch == steps
