"""Runs that differ only in the seed, trained as one stacked model (`train --seeds K`): each run
agrees with the same run trained alone (the same batches and dropout masks; numbers equal up to
the rounding of batched matrix multiplies), keeps its own files, and resumes after an interrupt."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import torch

from helpers import FAST, FAST_RUN, interrupt_after, register_plugin
from helpers import train_fast as _train
from prestarted import clipclap, clipclap_run

SEEDS = (42, 43)
LOSS_TOLERANCE = 1e-5
"Relative difference allowed between a stacked run's epoch losses and the run's alone (measured: ~2e-7)"


def _records(run, stage):
    return [json.loads(line) for line in (run / f"stage{stage}" / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(a, b, stages=(1, 2)):
    """Two folders of one run agree: per epoch the same learning rate and best epoch, losses and
    validation figures equal up to rounding; the same test figures."""
    for stage in stages:
        ra, rb = _records(a, stage), _records(b, stage)
        assert [r["epoch"] for r in ra] == [r["epoch"] for r in rb]
        for x, y in zip(ra, rb, strict=True):
            assert (x["lr"], x["best_epoch"]) == (y["lr"], y["best_epoch"])
            for name, value in x["losses"].items():
                assert y["losses"][name] == pytest.approx(value, rel=LOSS_TOLERANCE), (stage, x["epoch"], name)
            for name in ("seen", "unseen", "hm"):
                assert y["val"][name] == pytest.approx(x["val"][name], abs=1e-9), (stage, x["epoch"], name)
    test_a = json.loads((a / "results.json").read_text())["test"]
    test_b = json.loads((b / "results.json").read_text())["test"]
    assert test_a == pytest.approx(test_b, abs=1e-9)


def _interrupted_stack(cli, store, runs, monkeypatch, saves: int):
    """`train --seeds 2` (stacked) interrupted as Ctrl-C would, right after its `saves`-th
    checkpoint; returns the command's result, with checkpoints saved normally again."""
    interrupt_after(monkeypatch, saves)
    return _train(cli, store, runs, "--seeds", "2")


@pytest.mark.slow
def test_stacked_runs_match_the_same_runs_alone(alone_runs, stacked_runs):
    """alone_runs: the same seeds trained with --no-stack, which says nothing of a stack."""
    said = (alone_runs.parents[2] / "stderr.txt").read_text()
    assert "on demo (seed 42)" in said and "on demo (seed 43)" in said and "trained as one stack" not in said, said
    for seed in SEEDS:
        alone, stacked = alone_runs / f"seed{seed}", stacked_runs / f"seed{seed}"
        _assert_same_run(alone, stacked)
        config = json.loads((stacked / "config.json").read_text())
        assert config["spec"]["train"]["seed"] == seed
        # the same files as a run alone writes
        assert sorted(p.name for p in stacked.rglob("*")) == sorted(p.name for p in alone.rglob("*"))


def test_a_stacked_step_draws_each_runs_own_batches_and_masks(demo_store):
    """Below the command line: one step of a 3-run stack against each run's step alone, with
    the batch norm statistics, dropout masks and Adam updates that follow."""
    from clipclap_cli.data.protocol_data import load_protocol_data
    from clipclap_cli.plugins.manager import make_plugin_manager
    from clipclap_cli.protocol import TrainSettings
    from clipclap_cli.runs.spec import RunSpec, build_head, store_dims
    from clipclap_cli.store.feature_store import FeatureStore
    from clipclap_cli.train.stacking import stacked_epoch
    from clipclap_cli.train.stages import own_dropout_generator
    from clipclap_cli.train.trainer import Trainer

    pm = make_plugin_manager(entrypoints=False)
    store = FeatureStore(demo_store)
    data = load_protocol_data(store, "demo", "cls_split")
    dims = store_dims(store, "demo")
    train_set, val = data.stage(1)

    def trainer(seed, stacked):
        cfg = TrainSettings(seed=seed, batches_per_epoch=3, epochs=1)
        torch.manual_seed(seed)
        head = build_head(RunSpec("demo", "cls_split", "clipclap", {}, dims, cfg), pm)
        own = own_dropout_generator(data) if stacked else None
        return Trainer(head, data, train_set, val, cfg, own)

    seeds = (1, 2, 3)
    alone = []
    for seed in seeds:
        t = trainer(seed, False)
        alone.append((t.run_epoch(), t))
    together = [trainer(seed, True) for seed in seeds]
    for ((record, t), s, stacked_record) in zip(alone, together, stacked_epoch(together), strict=True):
        for name, value in record.losses.items():
            assert stacked_record.losses[name] == pytest.approx(value, rel=LOSS_TOLERANCE)
        assert t.generator.get_state().equal(s.generator.get_state())  # the same batches drawn
        assert torch.get_rng_state().shape == s.dropout_generator.get_state().shape
        mine, theirs = t.head.state_dict(), s.head.state_dict()
        for key, value in mine.items():
            if key.endswith("num_batches_tracked"):
                assert theirs[key] == value  # every batch-norm call counted
            else:
                torch.testing.assert_close(theirs[key], value, rtol=1e-4, atol=1e-6)
        for a, b in zip(t.optimizer.state.values(), s.optimizer.state.values(), strict=True):
            torch.testing.assert_close(b["exp_avg"], a["exp_avg"], rtol=1e-3, atol=1e-9)
    # the masks: each run's generator has drawn exactly what the run alone drew from the global one
    t = trainer(seeds[-1], False)
    t.run_epoch()
    assert torch.get_rng_state().equal(together[-1].dropout_generator.get_state())


@pytest.mark.slow
def test_runs_that_end_at_other_epochs_leave_the_stack(cli, demo_store, stacked_runs, tmp_path):
    """Stage 2 trains as many epochs as each run's stage 1 chose: a run that ends sooner leaves
    the stack and the other goes on, each as it would alone."""
    for where in ("stacked", "alone"):
        for seed in SEEDS:
            run = tmp_path / where / "demo" / FAST_RUN / f"seed{seed}"
            shutil.copytree(stacked_runs / f"seed{seed}", run)
            for stale in ("stage2", "results.json"):
                path = run / stale
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        result = tmp_path / where / "demo" / FAST_RUN / "seed43" / "stage1" / "result.json"
        data = json.loads(result.read_text())
        data["best_epoch"] = 1
        result.write_text(json.dumps(data))
    longer = json.loads((stacked_runs / "seed42" / "stage1" / "result.json").read_text())["best_epoch"]
    assert longer > 1, "seed 42's stage 1 chose its first epoch: no run would go on alone (lengthen helpers.FAST)"
    assert _train(cli, demo_store, tmp_path / "stacked", "--seeds", "2").exit_code == 0
    assert _train(cli, demo_store, tmp_path / "alone", "--seeds", "2", "--no-stack").exit_code == 0
    for seed, epochs in zip(SEEDS, (longer, 1), strict=True):
        stacked, alone = (tmp_path / w / "demo" / FAST_RUN / f"seed{seed}" for w in ("stacked", "alone"))
        assert len(_records(stacked, 2)) == epochs
        _assert_same_run(alone, stacked, stages=(2,))


@pytest.mark.slow
def test_an_interrupted_stack_resumes_to_the_same_results(cli, demo_store, stacked_runs, tmp_path, monkeypatch):
    """Interrupted after seed 42's second epoch and seed 43's first (the checkpoints of one stacked
    epoch written in part), the stack resumes each run where it stood and ends with the bytes of
    the uninterrupted stack."""
    assert _interrupted_stack(cli, demo_store, tmp_path, monkeypatch, saves=3).exit_code == 130
    r = _train(cli, demo_store, tmp_path, "--seeds", "2")
    assert r.exit_code == 0, r
    assert "seed 42: stage 1: resuming at epoch 3/3" in r.stderr
    assert "seed 43: stage 1: resuming at epoch 2/3" in r.stderr
    for seed in SEEDS:
        run = tmp_path / "demo" / FAST_RUN / f"seed{seed}"
        assert (run / "results.json").read_bytes() == (stacked_runs / f"seed{seed}" / "results.json").read_bytes()
        for stage in ("stage1", "stage2"):
            assert (run / stage / "metrics.jsonl").read_bytes() == \
                (stacked_runs / f"seed{seed}" / stage / "metrics.jsonl").read_bytes()


@pytest.mark.slow
def test_a_killed_stack_resumes_every_run(demo_store, stacked_runs, tmp_path):
    cmd = ["train", "demo", "--store", str(demo_store), "--runs-dir", str(tmp_path), *FAST, "--seeds", "2"]
    stage1 = tmp_path / "demo" / FAST_RUN / "seed43" / "stage1"
    proc = clipclap(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120  # both runs have a checkpoint once seed 43 (saved second) has one
    while time.time() < deadline and not (stage1 / "checkpoint-last.safetensors").exists():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (stage1 / "metrics.jsonl").read_text().count("\n") < 3, "the runs finished before they could be killed"
    done = clipclap_run(cmd)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("resuming at epoch") == 2, done.stderr
    for seed in SEEDS:
        run = tmp_path / "demo" / FAST_RUN / f"seed{seed}"
        assert (run / "results.json").read_bytes() == (stacked_runs / f"seed{seed}" / "results.json").read_bytes()


@pytest.mark.slow
def test_a_stacked_run_resumes_alone_and_a_lone_run_in_a_stack(cli, demo_store, stacked_runs, tmp_path, monkeypatch):
    """A run's checkpoint is the same whether it trained stacked or alone (its dropout generator
    under the key a run alone uses): interrupted in a stack and resumed with --no-stack, the runs
    end as the uninterrupted stack's, up to rounding."""
    assert _interrupted_stack(cli, demo_store, tmp_path, monkeypatch, saves=2).exit_code == 130
    r = _train(cli, demo_store, tmp_path, "--seeds", "2", "--no-stack")
    assert r.exit_code == 0, r
    for seed in SEEDS:
        _assert_same_run(stacked_runs / f"seed{seed}", tmp_path / "demo" / FAST_RUN / f"seed{seed}")


def test_a_broken_stacked_form_is_one_clear_error(cli, demo_store, tmp_path):
    """A plugin head whose stacked loss does not give one value per run is refused with the
    contract's message naming the head, before any epoch is recorded."""
    from clipclap_cli.plugins.manager import make_plugin_manager
    from clipclap_cli.plugins.registry import get_head

    base = get_head("clipclap", make_plugin_manager(entrypoints=False))

    class Summed(base):
        head_id = "summed"

        @classmethod
        def stacked(cls, heads, params, generators):
            inner = base.stacked(heads, params, generators)

            class Wrong:
                def loss(self, batch, class_text):
                    total, parts = inner.loss(batch, class_text)
                    return total.sum(), parts

                def __getattr__(self, name):
                    return getattr(inner, name)

            return Wrong()

    pm = make_plugin_manager(entrypoints=False)
    register_plugin(pm, "summed", heads=[Summed])
    r = _train(cli, demo_store, tmp_path, "--head", "summed", "--seeds", "2", manager=pm)
    assert r.exit_code == 1
    assert "stacked loss" in r.stderr and "summed" in r.stderr and "came: total is a torch.float32 tensor of shape ()" \
        in r.stderr, r.stderr
    assert not list(tmp_path.rglob("metrics.jsonl")) or all(
        p.read_text() == "" for p in tmp_path.rglob("metrics.jsonl"))
