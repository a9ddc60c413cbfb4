"""What several test modules share, written once: the short training schedule and the command
that trains with it, a run interrupted after its Nth checkpoint, the one-error-line check, a
folder's digest, and a plugin registered in-process (as llm's conftest registers fake plugins).

The fixtures that build on these (the demo store, the shared trained runs) are in conftest.py;
the other helper modules here hold one concern each (broken_heads, installed_plugins,
media_files, object_dir, released_tree, shared_material, example_plugin)."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: A schedule short enough for the suite and long enough to learn the demo (3 epochs: a best
#: epoch to choose, a resume to make after the first or second; seeds 42 and 43 pick epoch 3, and
#: the tests that need a run to choose a later epoch than another check it).
FAST = ("--epochs", "3", "--batches-per-epoch", "15")
#: FAST departs from the demo's schedule (20 epochs of 300 batches), so its runs' folders say so
FAST_RUN = "clipclap,epochs=3,batches-per-epoch=15"
#: The cheapest whole run (both stages and the test evaluation), for checks that do not depend on
#: what the run learns: files, messages, bytes equal between two ways of training one run
SMOKE = ("--epochs", "1", "--batches-per-epoch", "2")
SMOKE_RUN = "clipclap,epochs=1,batches-per-epoch=2"


def train_fast(cli, store, runs, *extra, manager=None, schedule=FAST):
    """`clipclap train demo` with the FAST schedule (or `schedule`) into the runs folder `runs`."""
    return cli("train", "demo", "--store", store, "--runs-dir", runs, *schedule, *extra, manager=manager)


def interrupt_after(monkeypatch, saves: int = 1) -> None:
    """The next training in this process stops as Ctrl-C would, right after its `saves`-th
    checkpoint is written; checkpoints are written normally again from then on."""
    import clipclap_cli.train.stages as stages

    original, calls = stages.save_trainer, {"n": 0}

    def save_then_interrupt(path, trainer):
        original(path, trainer)
        calls["n"] += 1
        if calls["n"] == saves:
            monkeypatch.setattr(stages, "save_trainer", original)
            raise KeyboardInterrupt

    monkeypatch.setattr(stages, "save_trainer", save_then_interrupt)


def one_error_line(r, code: int = 1) -> str:
    """The command failed with `code` and said why in one line, 'Error: ...': that line."""
    assert r.exit_code == code, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file under `path` (the store's bytes, to prove nothing changed)."""
    path = Path(path)
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def register_plugin(pm, name: str, *, heads=(), encoders=(), dataset_kinds=(), datasets=()) -> object:
    """Register in `pm`, under `name`, a plugin whose hooks register the given heads, encoders,
    dataset kinds and datasets (the hooks of the kinds given, no others); returns the plugin."""
    from clipclap_cli import hookimpl

    def hook(items):
        def register_all(self, register):
            for item in items:
                register(item)
        return hookimpl(register_all)

    given = {"register_heads": heads, "register_encoders": encoders, "register_dataset_kinds": dataset_kinds,
             "register_datasets": datasets}
    plugin = type("Plugin", (), {hook_name: hook(items) for hook_name, items in given.items() if items})()
    pm.register(plugin, name=name)
    return plugin
