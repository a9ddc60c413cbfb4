"""Registries: built-ins through the same hooks, third-party plugins, duplicates, did-you-mean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pluggy
import pytest

from clipclap_cli import DatasetAdapter, hookimpl
from clipclap_cli.data.datasets_toml import load_catalog
from clipclap_cli.errors import UnknownNameError
from clipclap_cli.plugins import hookspecs
from clipclap_cli.plugins.manager import DEFAULT_PLUGINS, failures, make_plugin_manager
from clipclap_cli.plugins.registry import list_dataset_kinds, list_encoders, list_heads
from installed_plugins import clipclap

ROOT = Path(__file__).resolve().parents[1]


def test_builtins_registered_through_hooks(pm):
    assert set(DEFAULT_PLUGINS) <= {pm.get_name(p) for p in pm.get_plugins()}
    kinds = list_dataset_kinds(pm)
    assert kinds.entry("released-features").plugin == "clipclap_plugins.datasets"
    assert list_heads(pm).entry("clipclap").plugin == "clipclap_plugins.heads"
    assert "random-projection" in list_encoders(pm).names()


def test_unknown_name_suggests_closest(pm):
    with pytest.raises(UnknownNameError) as e:
        list_heads(pm).get("clipclp")
    assert "Did you mean 'clipclap'?" in str(e.value) and "Available: ale, apn, avca," in str(e.value)


def test_a_misspelt_hook_name_leaves_the_plugin_out_with_the_closest_name():
    from clipclap_cli.plugins.manager import _empty_manager, _finish

    class Typo:
        @hookimpl
        def register_head(self, register):
            pass

    pm = _empty_manager()
    pm.register(Typo(), name="typo")
    pm = _finish(pm)  # pluggy's check_pending would raise here, failing every command
    assert not pm.has_plugin("typo")
    assert [f.reason for f in failures(pm)] == [
        "it implements 'register_head', which is not a clipclap hook (did you mean 'register_heads'?)"]


def test_hookimpl_with_unknown_argument_rejected(pm):
    class Bad:
        @hookimpl
        def register_heads(self, register, extra):
            pass

    with pytest.raises(pluggy.PluginValidationError):
        pm.register(Bad(), name="bad")


def test_in_process_dataset_plugin_adds_whole_dataset(pm, cli, tmp_path):
    @dataclass(frozen=True)
    class NoParams:
        pass

    class Mine(DatasetAdapter):
        kind = "mine"
        Params = NoParams

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register(Mine)

        @hookimpl
        def register_dataset_entries(self, register):
            register("mine-ds", {"kind": "mine", "display_name": "Mine"})

    pm.register(Plugin(), name="mine-plugin")
    cat = load_catalog(pm)
    assert cat.get("mine-ds").kind == "mine"
    r = cli("datasets", "list", "--json", "--store", tmp_path / "s.zarr")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["mine-ds"]["plugin"] == "mine-plugin" and rows["mine-ds"]["defined_in"] == "plugin mine-plugin"


def test_a_plugin_s_text_encoder_embeds_labels_and_they_train(pm, cli, demo_copy, tmp_path):
    """`embed --encoder NAME --as clip` runs a plugin's text encoder (here letter counts) over the
    dataset's clip_text templates and stores the result as the CLIP label embeddings, which a
    run then trains on; an encoder without label embeddings, or no --as for a name that is no
    label embedding, is one line and leaves the store as it was."""
    import tomllib

    import numpy as np

    from clipclap_cli import Encoder
    from clipclap_cli.store.feature_store import FeatureStore
    from helpers import register_plugin, tree_digest

    class Letters(Encoder):
        encoder_id, modality, dim = "letters", "text", 26

        @dataclass(frozen=True)
        class Params:
            pass

        def encode_batch(self, items):
            return np.stack([[text.lower().count(chr(97 + i)) for i in range(26)] for text in items]).astype(np.float32)

        def label_embedding(self, prompts):
            total = self.encode_batch(prompts).sum(axis=0)
            return total / np.linalg.norm(total)

    register_plugin(pm, "letters-plugin", encoders=[Letters()])
    store = demo_copy
    before = tree_digest(store)
    for args, line in (
        (("--encoder", "letters"), "Error: --as 'letters': the label embeddings are clip and clap; say which one "
                                   "encoder 'letters' writes (--as clip or --as clap)"),
        (("--encoder", "random-projection", "--as", "clip"),
         "Error: encoder 'random-projection' computes no label embeddings (it has no label_embedding)"),
    ):
        r = cli("embed", "demo", "--store", store, *args)
        assert r.exit_code == 1 and r.stderr.strip() == line, r
    assert tree_digest(store) == before

    r = cli("embed", "demo", "--store", store, "--encoder", "letters", "--as", "clip")
    assert r.exit_code == 0 and "demo: clip label embeddings from letters 48 x 26" in r.stderr, r
    fs = FeatureStore(store)
    entry = load_catalog(pm).get("demo")
    templates = tomllib.loads(entry.resolve(entry.prompts).read_text())["clip_text"]["templates"]
    rows = fs.read_label_embeddings("demo", "clip")
    for c, name in enumerate(fs.info("demo")["prompt_names"]):
        counts = np.array([sum(t.format(name).lower().count(chr(97 + i)) for t in templates) for i in range(26)])
        np.testing.assert_allclose(rows[c], counts / np.linalg.norm(counts), rtol=1e-6)
    r = cli("train", "demo", "--store", store, "--runs-dir", tmp_path / "runs", "--stage", "1",
            "--epochs", "1", "--batches-per-epoch", "5")
    assert r.exit_code == 0, r
    run = tmp_path / "runs" / "demo" / "clipclap,epochs=1,batches-per-epoch=5" / "seed42"
    saved = json.loads((run / "config.json").read_text())
    assert saved["spec"]["dims"]["text_parts"] == [["clip", 26], ["clap", 1024]]


def test_load_plugins_env_filters_entry_points(monkeypatch):
    monkeypatch.setenv("CLIPCLAP_LOAD_PLUGINS", "")
    pm = make_plugin_manager()
    assert {pm.get_name(p) for p in pm.get_plugins()} == set(DEFAULT_PLUGINS)


def test_every_hookspec_documented():
    docs = (ROOT / "README.md").read_text() + (ROOT / "docs" / "plugins.md").read_text()
    pm = pluggy.PluginManager("clipclap")
    pm.add_hookspecs(hookspecs)
    from clipclap_cli.plugins.manager import DEPRECATED_HOOKS

    names = [name for name in dir(pm.hook) if name.startswith("register_")]
    assert len(names) == 6
    for name in names:
        if name in DEPRECATED_HOOKS:  # the old name is mentioned beside the new one's heading
            assert f"called `{name}`" in docs and f"### `{DEPRECATED_HOOKS[name]}(register)`" in docs
            continue
        spec = getattr(pm.hook, name).spec
        assert f"### `{name}({', '.join(spec.argnames)})`" in docs, name


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory):
    """Install examples/clipclap-example-plugin into a private folder put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("example-plugin")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT / "examples" / "clipclap-example-plugin")],
        check=True, capture_output=True,
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    env.pop("CLIPCLAP_LOAD_PLUGINS", None)
    return env


def test_example_plugin_listed_and_usable(example_plugin, tmp_path):
    env = example_plugin
    r = clipclap(env, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    assert [p["name"] for p in json.loads(r.stdout)] == ["example"]
    heads = {h["id"]: h for h in json.loads(clipclap(env, "heads", "list", "--json").stdout)}
    assert heads["bilinear"]["plugin"] == "example"
    datasets = {d["name"]: d for d in json.loads(clipclap(env, "datasets", "list", "--json").stdout)}
    assert datasets["toy"]["kind"] == "toy-clusters" and datasets["toy"]["plugin"] == "example"
    store = tmp_path / "s.zarr"
    r = clipclap(env, "demo", "--dataset", "toy", "--no-train", "--store", store)
    assert r.returncode == 0, r.stderr
    r = clipclap(env, "split", "toy", "--seen", 8, "--unseen", 3, "--seed", 0, "--split", "drawn", "--store", store)
    assert r.returncode == 0, r.stderr
    info = json.loads(clipclap(env, "datasets", "show", "toy", "--json", "--store", store).stdout)
    assert info["videos"] == 480 and info["splits"]["drawn"]["stage_2_test_unseen"]["classes"] == 3
    # the plugin's head trains on the plugin's dataset through the core trainer and protocol
    runs = tmp_path / "runs"
    r = clipclap(env, "train", "toy", "--head", "bilinear", "--store", store, "--runs-dir", runs)
    assert r.returncode == 0, r.stderr
    results = json.loads((runs / "toy-drawn" / "bilinear" / "seed42" / "results.json").read_text())
    assert results["head"] == "bilinear" and results["test"]["zsl"] > 1 / 3  # 3 unseen classes: chance 1/3
    assert "| bilinear |" in r.stdout


# ---------------------------------------------------------------- names released versions documented
# What clipclap 0.1 and 0.2 told plugin authors to import: the package's public names (its
# __init__ then), docs/plugins.md and the example plugin of 0.2.0 (`git show 40e3cce:docs/plugins.md`).
DOCUMENTED_IN_PLACE = [
    *(f"clipclap_cli.{name}" for name in (
        "PARTITIONS", "LABEL_PARTS", "ClipclapError", "DatasetAdapter", "Encoder", "FeatureBundle", "FeatureDims",
        "FusionHead", "Sample", "__version__", "check_ranges", "create_head", "get_encoder", "get_head", "hookimpl",
        "list_encoders", "list_heads")),
    "clipclap_cli.errors.ClipclapError", "clipclap_cli.cli.run",
    # and what docs/plugins.md added before 0.3 (`git show 622c4b4^:docs/plugins.md`)
    "clipclap_cli.api.FusionHead", "clipclap_cli.extras.need", "clipclap_cli.errors.ImportDataError",
    *(f"clipclap_cli.testing.{name}" for name in (
        "check_plugin", "check_head", "check_encoder", "check_dataset_kind", "ContractError")),
]
"Still where they were documented: they import without a warning"
MOVED = {f"clipclap_cli.heads_base.{name}": f"clipclap_cli.api.{name}"
         for name in ("FusionHead", "Batch", "Block", "Dropout", "MODES", "fbrd")}
"Moved since: each still imports from its old place until 0.5, warning where it went"


def _resolve(dotted: str):
    import importlib

    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("dotted", DOCUMENTED_IN_PLACE)
def test_a_name_a_released_version_documented_imports_as_it_was_documented(dotted):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _resolve(dotted) is not None


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_name_that_moved_still_imports_with_a_warning_naming_its_new_place(old):
    module, _, name = old.rpartition(".")
    with pytest.warns(DeprecationWarning) as caught:
        namespace: dict = {}
        exec(f"from {module} import {name}", namespace)  # as a 0.2 plugin wrote it
    [warning] = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert MOVED[old] in str(warning.message) and "0.5" in str(warning.message), warning.message
    assert namespace[name] is _resolve(MOVED[old])


def test_the_shims_go_in_0_5():
    """The deprecated names keep working for one more minor version: from 0.5 this test fails
    until the shim modules (and MOVED) are removed."""
    import clipclap_cli
    import clipclap_cli.heads_base as shim

    assert "removed in clipclap 0.5" in " ".join(shim.__doc__.split())
    assert tuple(int(x) for x in clipclap_cli.__version__.split(".")[:2]) < (0, 5), "remove clipclap_cli/heads_base.py"
