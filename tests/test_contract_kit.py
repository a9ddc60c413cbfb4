"""The contract kit (issue "Plugins that cannot break the tool", point 4): every built-in dataset
kind, encoder and head passes it; heads, encoders and formats broken the way real plugins break
fail it with a message naming them; `clipclap plugins check` prints the table and exits non-zero
on a failure; the example plugin's own test suite runs it in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from broken_heads import BROKEN_HEADS, broken_head
from clipclap_cli import Encoder
from clipclap_cli.plugins.contracts import ContractError
from clipclap_cli.plugins.registry import list_dataset_kinds, list_encoders, list_heads
from clipclap_cli.testing import SkipCheck, check_dataset_kind, check_encoder, check_head, check_plugin
from helpers import register_plugin
from installed_plugins import clipclap, environment, install

REPO = Path(__file__).resolve().parents[1]
BUILT_IN_HEADS = ("ale", "apn", "avca", "avgzslnet", "cjme", "clipclap", "devise", "hspmoe", "hyper-multiple", "sje",
                  "tcaf", "zeroshot")


def test_the_list_of_built_in_heads_is_every_head_clipclap_registers(pm):
    """A head added to plugins/heads.py and not here would go unchecked by the next test."""
    assert sorted(list_heads(pm).names()) == list(BUILT_IN_HEADS)


@pytest.mark.parametrize("name", BUILT_IN_HEADS)
def test_every_built_in_head_keeps_the_contract(pm, name):
    check_head(list_heads(pm).get(name))


@pytest.mark.parametrize("name", ["released-features", "synthetic", "video-folder"])
def test_every_built_in_dataset_kind_keeps_the_contract(pm, name, tmp_path):
    check_dataset_kind(list_dataset_kinds(pm).get(name), tmp_path)
    assert any(tmp_path.iterdir()) or name == "synthetic"  # it was given a folder and used it


@pytest.mark.parametrize("name", ["random-projection", "clip"])
def test_the_built_in_encoders_keep_the_contract(pm, name):
    check_encoder(list_encoders(pm).get(name))


def test_the_clap_encoder_is_checked_up_to_the_vocabulary_it_lacks(pm):
    """No BERT vocabulary ships (it is a download): encode_batch is exercised, label_embedding skipped, said why."""
    with pytest.raises(SkipCheck, match=r"encode_batch passes; label_embedding needs .*vocab"):
        check_encoder(list_encoders(pm).get("clap"))


@pytest.mark.parametrize("case", sorted(BROKEN_HEADS))
def test_the_kit_refuses_the_heads_the_trainer_refuses_with_the_same_words(case):
    methods, came = BROKEN_HEADS[case]
    with pytest.raises(ContractError) as e:
        check_head(broken_head(**methods))
    assert "fusion head 'broken-head'" in str(e.value) and came in str(e.value), str(e.value)


def _batch_dependent(self, audio, video, class_text):
    import torch

    return {"both": torch.cdist(audio - audio.mean(0), class_text[:, : audio.shape[1]])}


def _forgetful_init(self, dims, params):
    type(self).__mro__[1].__init__(self, dims, params)
    import torch

    self.offset = torch.randn(1)  # a plain attribute: not in the state dict


def _forgetful_distances(self, audio, video, class_text):
    import torch

    return {"both": torch.zeros(len(audio), len(class_text)) + self.offset}


def _clipclap_stack(heads, params, generators):
    from clipclap_plugins.clipclap_head import StackedClipClap

    return StackedClipClap(heads, params, generators)


def _one_generator_stack(cls, heads, params, generators):
    """Every run's masks from the first run's generator, as a stack drawing from one source would."""
    return _clipclap_stack(heads, params, [generators[0]] * len(generators))


class _Wrapped:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _summed_stack(cls, heads, params, generators):
    stack = _Wrapped(_clipclap_stack(heads, params, generators))
    stack.loss = lambda batch, text: (lambda total, parts: (total.sum(), parts))(*stack.inner.loss(batch, text))
    return stack


def _forgetful_stack(cls, heads, params, generators):
    stack = _Wrapped(_clipclap_stack(heads, params, generators))
    stack.write_back = lambda: None
    return stack


KIT_ONLY = {
    "batch statistics in eval": ({"distances": _batch_dependent}, "depend on the other samples"),
    "state outside the state dict": ({"__init__": _forgetful_init, "distances": _forgetful_distances},
                                     "rebuilt from its state dict gives other distances"),
    "loss raises": ({"loss": lambda self, batch, text: 1 / 0}, "loss raised: ZeroDivisionError"),
    # a stacked form (`train --seeds K`) that is not the head's own training, run by run
    "stacked masks from one generator": ({"stacked": classmethod(_one_generator_stack)},
                                         "stacked form's loss per run is"),
    "stacked loss summed": ({"stacked": classmethod(_summed_stack)}, "came: total is a torch.float32 tensor of shape"),
    "stacked statistics not written back": ({"stacked": classmethod(_forgetful_stack)},
                                            "write_back\\(\\) must give each head"),
}


@pytest.mark.parametrize("case", sorted(KIT_ONLY))
def test_the_kit_finds_what_only_a_second_look_shows(case):
    methods, expected = KIT_ONLY[case]
    with pytest.raises(ContractError, match=expected):
        check_head(broken_head(**methods))


class _Encoder(Encoder):
    encoder_id, modality, dim = "broken-encoder", "audio", 6

    @dataclass(frozen=True)
    class Params:
        pass

    def encode_batch(self, items):
        return np.stack([np.full(self.dim, float(np.mean(i)), np.float32) for i in items])


BROKEN_ENCODERS = {
    "one vector for the batch": (lambda self, items: np.zeros(self.dim, np.float32),
                                 "came: a float32 array of shape (6,)"),
    "wrong width": (lambda self, items: np.zeros((len(items), 5), np.float32), "shape (3, 5)"),
    "a list": (lambda self, items: [[0.0] * self.dim for _ in items], "came: a list"),
    "NaN": (lambda self, items: np.full((len(items), self.dim), np.nan, np.float32), "NaN or infinite"),
    "batch-normalised": (lambda self, items: (lambda x: x - x.mean(0))(np.random.default_rng(0).standard_normal(
        (len(items), self.dim)).astype(np.float32)), "depend on the other items"),
}


def test_a_well_formed_encoder_passes():
    check_encoder(_Encoder())


@pytest.mark.parametrize("case", sorted(BROKEN_ENCODERS))
def test_the_kit_refuses_broken_encoders_naming_them(case):
    method, expected = BROKEN_ENCODERS[case]
    broken = type("Broken", (_Encoder,), {"encode_batch": method})
    with pytest.raises(ContractError) as e:
        check_encoder(broken())
    assert "encoder 'broken-encoder'" in str(e.value) and expected in str(e.value), str(e.value)


def test_the_kit_refuses_a_format_whose_bundle_the_import_would_refuse(pm, tmp_path):
    base = list_dataset_kinds(pm).get("synthetic")

    def load_features(self, root, **options):
        bundle = base.load_features(self, root, **options)
        bundle.labels = bundle.labels + 1  # off by one: the last class id is out of range
        return bundle

    broken = type("OffByOne", (base,), {"kind": "off-by-one", "load_features": load_features})
    with pytest.raises(ContractError, match=r"dataset kind 'off-by-one'.*a label is outside"):
        check_dataset_kind(broken, tmp_path)
    without = type("NoExample", (base,), {"kind": "no-example", "example": classmethod(lambda cls, folder: None)})
    with pytest.raises(SkipCheck, match="offers no example"):
        check_dataset_kind(without, tmp_path)


BROKEN_PLUGIN = """
    from clipclap_cli import hookimpl

    @hookimpl
    def register_heads(register):
        from clipclap_plugins.clipclap_head import ClipClapHead

        class Flat(ClipClapHead):
            head_id = "flat-head"

            def distances(self, audio, video, class_text):
                import torch

                return {"both": torch.zeros(len(audio), 1)}

        register(Flat)
    """


def test_plugins_check_prints_a_table_and_fails_on_a_broken_plugin(tmp_path):
    install(tmp_path, "flat", BROKEN_PLUGIN)
    env = environment(tmp_path)
    r = clipclap(env, "plugins", "check", "flat-head", "synthetic", "--json")
    assert r.returncode == 1, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["synthetic"]["status"] == "pass"
    assert rows["flat-head"]["status"] == "fail" and rows["flat-head"]["plugin"] == "flat"
    assert "distances['both'] is a torch.float32 tensor of shape (11, 1)" in rows["flat-head"]["reason"]
    assert r.stderr.strip() == "Error: 1 of 2 checks failed: fusion head 'flat-head'"
    r = clipclap(env, "plugins", "check", "random-projection")
    assert r.returncode == 0 and "pass" in r.stdout, r.stderr
    r = clipclap(env, "plugins", "check", "no-such-thing")
    assert r.returncode == 1 and "nothing registered is called 'no-such-thing'" in r.stderr


def test_check_plugin_lists_every_break_of_a_plugin_module():
    class Plugin:
        __name__ = "twobroken"

        from clipclap_cli import hookimpl

        @hookimpl
        def register_heads(self, register):
            register(broken_head(**BROKEN_HEADS["distances NaN"][0]))

        @hookimpl
        def register_encoders(self, register):
            register(type("Broken", (_Encoder,), {"encode_batch": BROKEN_ENCODERS["wrong width"][0]})())

    with pytest.raises(ContractError) as e:
        check_plugin(Plugin())
    lines = str(e.value).splitlines()
    assert lines[0] == "plugin 'twobroken' breaks the clipclap contract:" and len(lines) == 3, str(e.value)


def test_the_example_plugins_own_suite_runs_the_kit():
    folder = REPO / "examples" / "clipclap-example-plugin"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"} | {"PYTHONPATH": str(folder)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
                       cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("came, load", [
    ("came: a dict", lambda self, root, **o: {"ids": []}),
    ("FeatureBundle.labels a 1-d integer array", None),
])
def test_a_format_giving_a_malformed_bundle_stops_the_import_naming_it(cli, pm, tmp_path, came, load):
    base = list_dataset_kinds(pm).get("synthetic")
    if load is None:  # labels as a list of floats: would pass as class ids after a silent cast
        def load(self, root, **options):
            bundle = base.load_features(self, root, **options)
            bundle.labels = bundle.labels.astype(float)
            return bundle
    broken = type("Malformed", (base,), {"kind": "malformed", "load_features": load})

    register_plugin(pm, "malformed-plugin", dataset_kinds=[broken])
    (tmp_path / "d.toml").write_text('[datasets.bad]\nkind = "malformed"\nvideos_per_class = 5\n')
    r = cli("demo", "--dataset", "bad", "--no-train", "--store", tmp_path / "s.zarr", "--datasets", tmp_path / "d.toml",
            manager=pm)
    error = r.stderr[r.stderr.index("Error:"):].strip().splitlines()
    assert r.exit_code == 1 and len(error) == 3, r.stderr
    assert error[0].startswith("Error: dataset kind 'malformed' (module ") and came in "\n".join(error), error
    assert not (tmp_path / "s.zarr").exists() or not list((tmp_path / "s.zarr").glob("bad*"))
