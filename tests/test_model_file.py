"""The model file (issue 42 point 2): `clipclap export RUN -o NAME.clipclap` writes one
safetensors file that `predict` and `evaluate` read elsewhere, with no run folder, giving the
run's rows and figures; a newer format, a header that is not one, features of other encoders:
one line each, nothing written."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from clipclap_cli.runs.model_file import FORMAT_VERSION, HEADER_KEY
from helpers import one_error_line


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, trained_run):
    """The session's demo run exported, then moved to a folder of its own."""
    from clipclap_cli.cli import run
    from clipclap_cli.plugins.manager import make_plugin_manager

    made = tmp_path_factory.mktemp("export") / "demo.clipclap"
    assert run(["export", str(trained_run), "-o", str(made)], make_plugin_manager(entrypoints=False)) == 0
    moved = tmp_path_factory.mktemp("elsewhere") / "model.clipclap"
    shutil.move(made, moved)
    return moved


def _with_header(source, target, **changes):
    """A copy of a model file whose header has `changes` (None: the key removed)."""
    with safe_open(str(source), framework="pt") as fh:
        header = json.loads(fh.metadata()[HEADER_KEY])
    for key, value in changes.items():
        header.pop(key) if value is None else header.__setitem__(key, value)
    save_file(load_file(str(source)), str(target), metadata={HEADER_KEY: json.dumps(header)})
    return target


def test_an_exported_model_predicts_elsewhere_as_its_run(cli, model_file, trained_run, demo_store, tmp_path,
                                                         monkeypatch):
    """The issue's check: the file moved to another folder and used there gives the run's rows
    (every class, the test partitions), and reads with nothing unpickled."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model file is read without unpickling")

    from_run, from_file = tmp_path / "run.json", tmp_path / "file.json"
    assert cli("predict", trained_run, "--dataset", "demo", "-k", "48", "-o", from_run).exit_code == 0
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.chdir(model_file.parent)
    r = cli("predict", model_file.name, "--dataset", "demo", "--store", demo_store, "-k", "48", "-o", from_file)
    assert r.exit_code == 0, r
    assert from_file.read_text() == from_run.read_text()
    assert "by model.clipclap" in r.stderr


def test_an_exported_model_evaluates_to_its_runs_figures(cli, model_file, trained_run, demo_store):
    r = cli("evaluate", model_file, "--store", demo_store, "--json")
    assert r.exit_code == 0, r
    results = json.loads((trained_run / "results.json").read_text())
    printed = json.loads(r.stdout)
    assert printed["beta_star"] == results["beta_star"]
    assert {k: printed["test"][k] for k in ("seen", "unseen", "hm", "zsl")} == pytest.approx(
        {k: 100 * results["test"][k] for k in ("seen", "unseen", "hm", "zsl")}, abs=0, rel=1e-12)


def test_the_header_says_what_the_model_is(model_file, trained_run):
    with safe_open(str(model_file), framework="pt") as fh:
        header = json.loads(fh.metadata()[HEADER_KEY])
        keys = set(fh.keys())
    results = json.loads((trained_run / "results.json").read_text())
    assert header["format_version"] == FORMAT_VERSION and header["head"] == "clipclap"
    assert header["beta"] == results["beta_star"] and header["results"]["test"] == results["test"]
    assert sum(c["seen"] for c in header["classes"]) == results["classes"]["seen"] == 42
    assert {"features", "templates", "clipclap_version", "spec", "params"} <= set(header)
    assert "class_text" in keys and any(k.startswith("stage1.") for k in keys) and any(
        k.startswith("stage2.") for k in keys)


@pytest.mark.parametrize(("changes", "says"), [
    ({"format_version": FORMAT_VERSION + 1}, "this clipclap reads format 1 and older: upgrade clipclap"),
    ({"beta": "high"}, "its header is malformed (beta 'high' is not a finite number)"),
    ({"format": "other"}, "its header is not a clipclap model's"),
    ({"spec": {"head": "clipclap"}}, "its header's spec is malformed"),
    ({"features": {"video": {"encoder": "clip", "weights_sha256": "0" * 64}}},
     "holds video features of no recorded encoder (imported or generated); model.clipclap was trained on "
     "features of encoder clip (weights 0000000000000000)"),
])
def test_a_wrong_header_or_other_features_are_one_line(cli, model_file, demo_store, tmp_path, monkeypatch,
                                                       changes, says):
    monkeypatch.chdir(tmp_path)
    _with_header(model_file, tmp_path / "model.clipclap", **changes)
    r = cli("predict", "model.clipclap", "--dataset", "demo", "--store", demo_store, "-o", "p.json")
    assert says in one_error_line(r)
    assert not (tmp_path / "p.json").exists()
    assert says in one_error_line(cli("evaluate", "model.clipclap", "--store", demo_store))


def test_other_files_are_not_model_files(cli, trained_run, tmp_path):
    r = cli("predict", trained_run / "stage2" / "final.safetensors", "--dataset", "demo")
    assert "is not a clipclap model file (its header has no 'clipclap_model'" in one_error_line(r)
    (tmp_path / "x.clipclap").write_bytes(b"not a model")
    assert "is not a clipclap model file (not a safetensors file" in one_error_line(
        cli("predict", tmp_path / "x.clipclap", "--dataset", "demo"))
    r = cli("export", trained_run, "-o", tmp_path / "x.bin")
    assert "name the model file NAME.clipclap" in one_error_line(r)
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize("prefix", ["class_text", "stage2."])
def test_a_model_file_with_non_finite_values_is_refused_naming_the_tensor(cli, model_file, demo_store, tmp_path,
                                                                          prefix):
    """A damaged copy (NaN in a label embedding or a stage-2 weight) never gives plausible rows."""
    tensors = load_file(str(model_file))
    name = next(k for k in sorted(tensors) if k.startswith(prefix))
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    with safe_open(str(model_file), framework="pt") as fh:
        metadata = fh.metadata()
    save_file(tensors, str(tmp_path / "model.clipclap"), metadata=metadata)
    r = cli("predict", tmp_path / "model.clipclap", "--dataset", "demo", "--store", demo_store,
            "-o", tmp_path / "p.json")
    assert f"tensor {name} holds NaN or infinite values" in one_error_line(r)
    assert not (tmp_path / "p.json").exists()
