"""Runs write only into runs, and what a run reads or writes never ends in a traceback (issue 39).

* `--run` and `--runs-dir` take a folder clipclap made (its marker file), a run of an earlier
  clipclap (its config.json), or a new or empty folder; a folder of the user's, a file, or
  anything at or inside a clipclap store (links resolved) is refused in one line, nothing written.
* A hand-edited config.json is checked whole when it is read: one line naming the file and the
  field, nothing written.
* A full disk while a run writes any of its files is one line naming the file; the previous
  checkpoint stays, and the rerun ends with the bytes of an uninterrupted run.
* Run files follow the umask (models were 0600), and no JSON a run writes holds NaN or infinity.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from helpers import interrupt_after, one_error_line, tree_digest

TINY = ("--epochs", "2", "--batches-per-epoch", "2")
RUN_FILES = ("config.json", "results.json", "stage1/metrics.jsonl", "stage1/result.json", "stage2/metrics.jsonl",
             "stage2/result.json")


def _error_after_progress(r) -> str:
    """The error line that ends a command which failed while training (its progress lines above)."""
    assert r.exit_code == 1, r
    lines = r.stderr.strip().splitlines()
    assert [x for x in lines if x.startswith("Error: ")] == lines[-1:] and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


def _train(cli, store, run, *extra):
    return cli("train", "demo", "--store", store, "--run", run, *TINY, *extra)


def _same_as_reference(run: Path, tiny_run: Path) -> None:
    for name in RUN_FILES[1:]:  # config.json records when the run was created
        assert (run / name).read_bytes() == (tiny_run / name).read_bytes(), name


def _fake_store(folder: Path) -> Path:
    """A folder that is a clipclap store's root to anyone who looks (its zarr.json has the marker)."""
    folder.mkdir(parents=True)
    (folder / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                                  "attributes": {"clipclap_store": 1}}))
    return folder


# ---------------------------------------------------------------- runs write only into runs

def test_a_folder_of_the_users_files_is_refused_and_left_as_it_was(cli, demo_store, tmp_path):
    mine = tmp_path / "mine"
    (mine / "stage1").mkdir(parents=True)
    (mine / "results.json").write_text('{"my": "results"}')
    (mine / "stage1" / "metrics.jsonl").write_text('{"my": "metrics"}\n')
    before = tree_digest(mine)
    line = one_error_line(_train(cli, demo_store, mine))
    assert line == (f"Error: {mine} is not a run folder clipclap made (it holds results.json, stage1); runs are "
                    "written only into such a folder or a new or empty one: choose another (--run or --runs-dir)")
    assert tree_digest(mine) == before and sorted(p.name for p in mine.iterdir()) == ["results.json", "stage1"]
    # a run's default folder under --runs-dir that holds the user's files is refused alike
    runs = tmp_path / "runs"
    assert cli("train", "demo", "--store", demo_store, "--runs-dir", runs, *TINY, "--stage", "1").exit_code == 0
    [made] = [p.parent for p in runs.rglob("config.json")]
    other = runs / "demo" / made.parent.name / "seed7"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    line = one_error_line(cli("train", "demo", "--store", demo_store, "--runs-dir", runs, *TINY, "--seed", "7"))
    assert line.startswith(f"Error: {other} is not a run folder clipclap made (it holds notes.txt)")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_a_file_or_a_link_to_nothing_is_no_run_folder(cli, demo_store, tmp_path):
    file = tmp_path / "file"
    file.write_text("mine")
    assert one_error_line(_train(cli, demo_store, file)).startswith(f"Error: {file} is a file, not a run folder")
    assert file.read_text() == "mine"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert one_error_line(_train(cli, demo_store, dangling)).startswith(f"Error: {dangling} is a link to nothing")
    assert not (tmp_path / "nowhere").exists()
    runs_file = tmp_path / "runs-file"
    runs_file.write_text("mine")
    line = one_error_line(cli("train", "demo", "--store", demo_store, "--runs-dir", runs_file, *TINY))
    assert line.startswith(f"Error: {runs_file} is a file, not a folder of runs") and runs_file.read_text() == "mine"


def test_nothing_is_written_into_a_store(cli, demo_store, tmp_path):
    """--run or --runs-dir at or inside the store trained on, inside another store, or reached
    through a link: refused in one line naming the folder and the store, the stores unchanged."""
    before = tree_digest(demo_store)
    other = _fake_store(tmp_path / "other.zarr")
    (tmp_path / "link").symlink_to(demo_store, target_is_directory=True)
    cases = [
        (("--run", demo_store), demo_store, demo_store),
        (("--run", demo_store / "demo"), demo_store / "demo", demo_store),
        (("--run", tmp_path / "link" / "runs" / "r"), tmp_path / "link" / "runs" / "r", demo_store),
        (("--run", other / "deep" / "r"), other / "deep" / "r", other),
        (("--runs-dir", demo_store / "runs"), demo_store / "runs", demo_store),
        (("--runs-dir", tmp_path / "link"), tmp_path / "link", demo_store),
        (("--runs-dir", other), other, other),
    ]
    for option, named, store in cases:
        line = one_error_line(cli("train", "demo", "--store", demo_store, *option, *TINY))
        assert line.startswith(f"Error: {named} is inside the clipclap store {store.resolve()}: "), line
    assert tree_digest(demo_store) == before
    assert sorted(p.name for p in other.iterdir()) == ["zarr.json"]


def test_demo_refuses_runs_inside_its_store_before_generating(cli, tmp_path):
    store = tmp_path / "s.zarr"
    line = one_error_line(cli("demo", "--store", store, "--runs-dir", store / "runs", "--seeds", "1", *TINY))
    assert line.startswith(f"Error: {store / 'runs'} is inside the clipclap store {store}: ")
    assert list(tmp_path.iterdir()) == []


def test_a_new_or_empty_folder_becomes_a_marked_run(cli, demo_store, tiny_run, tmp_path):
    from clipclap_cli.runs.folder import RUN_MARKER
    from clipclap_cli.runs.run_format import RUN_FORMAT

    empty = tmp_path / "empty"
    empty.mkdir()
    assert _train(cli, demo_store, empty).exit_code == 0
    assert json.loads((empty / RUN_MARKER).read_text()) == {"run_format": RUN_FORMAT}
    _same_as_reference(empty, tiny_run)
    # a folder holding only the marker (a run killed before its config.json) is a run to start
    marked = tmp_path / "marked"
    marked.mkdir()
    shutil.copy(empty / RUN_MARKER, marked / RUN_MARKER)
    assert _train(cli, demo_store, marked).exit_code == 0
    _same_as_reference(marked, tiny_run)


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "written-before-the-marker"])
def test_an_interrupted_run_resumes_to_the_same_bytes(cli, demo_store, tiny_run, tmp_path, monkeypatch, marked):
    """A marked run resumes; so does a run of a clipclap from before the marker (its config.json
    says it is a run), which gets the marker of its run format when it resumes."""
    from clipclap_cli.runs.folder import RUN_MARKER

    run = tmp_path / "run"
    interrupt_after(monkeypatch, 1)
    assert _train(cli, demo_store, run).exit_code == 130
    assert (run / "stage1" / "checkpoint-last.safetensors").exists()
    if not marked:
        (run / RUN_MARKER).unlink()
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "run_format"}))
    r = _train(cli, demo_store, run)
    assert r.exit_code == 0 and "stage 1: resuming at epoch 2/2" in r.stderr, r
    _same_as_reference(run, tiny_run)
    assert json.loads((run / RUN_MARKER).read_text()) == {"run_format": 2 if marked else 1}


# ---------------------------------------------------------------- a hand-edited config.json

def _del(key):
    def edit(c):
        del c[key]
    return edit


def _set(*path_and_value):
    *path, value = path_and_value

    def edit(c):
        for key in path[:-1]:
            c = c[key]
        c[path[-1]] = value
    return edit


@pytest.mark.parametrize(("edit", "field"), [
    (_del("store"), "store: missing"),
    (_del("spec"), "spec: missing"),
    (_set("store", 5), "store = 5: expected a non-empty string"),
    (_set("threads", "two"), 'threads = "two": expected a whole number of at least 1'),
    (_set("threads", -3), "threads = -3: must be at least 1"),
    (_set("threads", 1.5), "threads = 1.5: expected a whole number of at least 1"),
    (_set("threads", 10**120), f"threads = {str(10**120)[:37]}...: is too large"),
    (_set("run_format", 9), "run_format = 9: run format 9 is newer than this clipclap reads (2)"),
    (_set("settings_sources", []), "settings_sources: expected a JSON object of strings"),
    (_set("spec", "head", None), "spec.head = null: expected a non-empty string"),
    (_set("spec", "params", [1]), "spec.params: expected a JSON object"),
    (_set("spec", "dims", "audio", 0), "spec.dims: audio: must be at least 1"),
    (_set("spec", "legacy_label_order", "no"), 'spec.legacy_label_order = "no": expected true or false'),
    (_set("spec", "train", "epochs", "3"), 'spec.train.epochs = "3": expected a whole number'),
    (_set("spec", "train", "epochs", 0), "spec.train.epochs = 0: must be at least 1"),
    (_set("spec", "train", "epochs", 10**6), "spec.train.epochs = 1000000: must be at most 100000"),
    (_set("spec", "train", "seed", -1), "spec.train.seed = -1: must be at least 0"),
    (_set("threads", 5000), "threads = 5000: must be at most 4096"),
    (_set("spec", "train", "lr", float("nan")), "spec.train.lr = NaN: expected a finite number"),
    (_set("spec", "train", "lr", -1e-4), "spec.train.lr = -0.0001: must be positive"),
    (_set("spec", "train", "batch_size", True), "spec.train.batch_size = true: expected a whole number"),
    (_set("spec", "train", "weight_decay", -1), "spec.train.weight_decay = -1: must be at least 0"),
    (_set("spec", "train", "replay_forward", 1), "spec.train.replay_forward = 1: expected true or false"),
    (_set("spec", "train", "beta_grid", [0, 5]), "spec.train.beta_grid: expected a list of 3 numbers"),
    (_set("spec", "train", "beta_grid", [5, 0, 76]), "spec.train.beta_grid: needs 0 <= START <= STOP"),
    (_set("spec", "train", "device", "two"), 'spec.train.device = "two": is not a device'),
    (_set("spec", "train", "epoch", 3), "spec.train.epoch: not a training setting (valid: batch_size,"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_a_hand_edited_config_is_one_line_naming_the_file_and_field(cli, demo_store, trained_run, tmp_path,
                                                                    edit, field):
    run = tmp_path / "damaged-run"  # planted on purpose (conftest.DAMAGED: the session's JSON walk passes it)
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))
    before = tree_digest(run)
    for args in (("train", "--run", run), ("train", "demo", "--store", demo_store, "--run", run, *TINY),
                 ("evaluate", run)):
        line = one_error_line(cli(*args))
        assert line.startswith(f"Error: {run / 'config.json'} is not one this clipclap can read ({field}"), line
    assert tree_digest(run) == before


def test_a_config_of_an_earlier_clipclap_still_reads(trained_run, tmp_path):
    """What a run of an earlier clipclap lacks (settings added since, the digest, the threads, the
    run format) is no error: the check refuses what is wrong, not what is old."""
    from clipclap_cli.runs.folder import config_problem, load_spec

    config = json.loads((trained_run / "config.json").read_text())
    assert config_problem(config) is None
    for key in ("data_digest", "threads", "run_format", "settings_sources", "created", "torch_version"):
        del config[key]
    for key in ("lr_scheduler", "beta_grid", "weight_decay"):
        del config["spec"]["train"][key]
    del config["spec"]["variant"]
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    spec, raw = load_spec(run)
    assert spec.train.epochs == 1 and spec.train.lr_scheduler is True and raw == config


# ---------------------------------------------------------------- a full disk while a run writes

def _disk_full_at(monkeypatch, name: str, nth: int = 1):
    """The `nth` write of a file called `name` finds the disk full: os.replace of its finished
    temporary copy raises ENOSPC (as a write into it would)."""
    real = os.replace
    seen = {"n": 0}

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            seen["n"] += 1
            if seen["n"] == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return seen


@pytest.mark.parametrize(("name", "nth", "epochs_kept"), [
    ("checkpoint-last.safetensors", 2, 1),  # the second epoch's resume state: the first's stays
    ("best.safetensors", 1, None),  # the first epoch's best model: no resume state yet
    ("metrics.jsonl", 3, 1),  # written when stage 1 starts, then after each epoch
    ("result.json", 1, 2),  # stage 1 ends: its last resume state stays until the result is written
    ("config.json", 1, None),  # the run's first file after its marker
    ("results.json", 1, None),  # the test evaluation, after both stages (no resume state left)
])
def test_a_full_disk_is_one_line_and_the_run_resumes(cli, demo_store, tiny_run, tmp_path, monkeypatch, name, nth,
                                                     epochs_kept):
    from safetensors import safe_open

    run = tmp_path / "run"
    _disk_full_at(monkeypatch, name, nth)
    line = _error_after_progress(_train(cli, demo_store, run))
    assert line.startswith("Error: cannot write ") and f"/{name}: No space left on device" in line, line
    assert not [p for p in run.rglob("*.tmp")]  # no partial copy left behind
    checkpoint = run / "stage1" / "checkpoint-last.safetensors"
    if epochs_kept is None:
        assert not checkpoint.exists()
    else:  # the resume state the failed write would have replaced, intact
        with safe_open(str(checkpoint), framework="pt") as fh:
            assert json.loads(fh.metadata()["clipclap"])["epochs_done"] == epochs_kept
    monkeypatch.undo()
    r = _train(cli, demo_store, run)
    assert r.exit_code == 0, r
    _same_as_reference(run, tiny_run)


def test_a_safetensors_failure_is_one_line_naming_the_file(cli, demo_store, tmp_path, monkeypatch):
    from safetensors import SafetensorError

    import clipclap_cli.runs.checkpoints as checkpoints

    def refuse(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(checkpoints, "save", refuse)
    run = tmp_path / "run"
    line = _error_after_progress(_train(cli, demo_store, run))
    assert line.startswith(f"Error: cannot write {run / 'stage1' / 'best.safetensors'}: SafetensorError: "), line


# ---------------------------------------------------------------- file modes and finite JSON

@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o007, 0o660)])
def test_run_files_follow_the_umask(cli, demo_store, tmp_path, umask, mode):
    run = tmp_path / "run"
    before = os.umask(umask)
    try:
        assert _train(cli, demo_store, run).exit_code == 0
    finally:
        os.umask(before)
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {p.relative_to(run).as_posix() for p in files} >= {*RUN_FILES, "stage1/best.safetensors",
                                                              "stage2/final.safetensors", ".clipclap-run"}
    assert {p.relative_to(run).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {
        p.relative_to(run).as_posix(): oct(mode) for p in files}


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} in JSON")
    return json.loads(text, parse_constant=refuse)


def test_every_json_a_run_writes_is_finite(tiny_run):
    for path in tiny_run.rglob("*"):
        if path.suffix == ".jsonl":
            assert all(_strict(line) for line in path.read_text().splitlines())
        elif path.suffix == ".json" or path.name == ".clipclap-run":
            _strict(path.read_text())


def test_a_non_finite_metric_is_refused_naming_where(tmp_path):
    from clipclap_cli.errors import WriteError
    from clipclap_cli.train.stages import write_metrics

    write_metrics(tmp_path, [{"epoch": 1, "val": {"hm": 0.5}}])
    before = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(WriteError, match=r"metrics.jsonl \(epoch 2\): val.hm is not a finite number"):
        write_metrics(tmp_path, [{"epoch": 1, "val": {"hm": 0.5}}, {"epoch": 2, "val": {"hm": float("nan")}}])
    assert (tmp_path / "metrics.jsonl").read_bytes() == before == b'{"epoch": 1, "val": {"hm": 0.5}}\n'
