"""Numbers checked where they enter, and hand-edited input files refused in one line (issue 39,
points 4 and 6): every numeric option and setting finite and in range before any work starts;
a datasets.toml or prompts file that is not UTF-8, holds a non-table entry, a value of the wrong
type or a bad template is one line naming the file and the field, with nothing written."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest

from clipclap_cli.errors import ClipclapError, ConfigError, ParamError
from clipclap_cli.protocol import (
    COUNT_RANGES,
    DEFAULT_BETA_GRID,
    MAX_GRID_POINTS,
    SettingError,
    TrainSettings,
    check_options,
    check_train_settings,
    merge_settings,
    parse_beta_grid,
)
from conftest import non_finite_json, non_finite_json_files
from helpers import one_error_line, tree_digest

HUGE = "1" + "0" * 119  # a number with 120 digits


# ---------------------------------------------------------------- train's numbers, before any work

@pytest.mark.parametrize("args, fragment", [
    (("--beta-grid", "0:nan:10"), "START and STOP must be finite numbers, not 0.0 and nan"),
    (("--beta-grid", "0:inf:10"), "START and STOP must be finite numbers, not 0.0 and inf"),
    (("--beta-grid", "nan:5:10"), "START and STOP must be finite numbers, not nan and 5.0"),
    (("--beta-grid", "0:5:1e30"), "'0:5:1e30': expected START:STOP:POINTS"),
    (("--beta-grid", "0:5:0"), "POINTS"),
    (("--beta-grid", "0:5:-4"), "POINTS"),
    (("--beta-grid", f"0:5:{MAX_GRID_POINTS + 1}"),
     f"POINTS must be a whole number from 1 to {MAX_GRID_POINTS}, not {MAX_GRID_POINTS + 1}"),
    (("--beta-grid", "0:5:100000000000"), "POINTS must be a whole number from 1 to"),
    (("--beta-grid", "0:1e7:10"), "needs 0 <= START <= STOP <= 1e+06"),
    (("--epochs", HUGE), "must be at most 100000, not 1000000"),
    (("--epochs", "-3"), "must be at least 1, not -3"),
    (("--batches-per-epoch", "0"), "must be at least 1, not 0"),
    (("--batches-per-epoch", HUGE), "must be at most 10000000"),
    (("--batch-size", "-1"), "must be at least 1, not -1"),
    (("--batch-size", "1" + "0" * 30), "must be at most 1000000"),
    (("--seeds", "100001"), "must be at most 10000, not 100001"),
    (("--lr", "nan"), "must be positive, not nan"),
    (("--lr", "inf"), "must be a finite number, not inf"),
    (("--lr", "-inf"), "must be positive, not -inf"),
    (("-p", "dropout=nan"), "dropout='nan': expected a finite number"),
    (("-p", "dropout=inf"), "dropout='inf': expected a finite number"),
    (("-p", "dropout=1e400"), "dropout='1e400': expected a finite number"),
    (("-p", f"hidden={HUGE}"), "hidden='1000000"),
    (("-p", "hidden=2000000"), "hidden=2000000: expected at most 1000000"),
])
def test_train_refuses_bad_numbers_before_any_work(cli, demo_store, tmp_path, args, fragment):
    """Each bad number is one line naming the option, exit 1, before a run folder exists (the
    old `--beta-grid 0:nan:10` trained and wrote "beta": NaN; `--epochs` with 120 digits trained
    forever; a huge batch was a torch traceback)."""
    before = tree_digest(demo_store)
    r = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs", "--epochs", "1",
            "--batches-per-epoch", "2", *args)
    line = one_error_line(r)
    named = "Error: parameter " if args[0] == "-p" else f"Error: {args[0]} "
    assert line.startswith(named) and fragment in line, line
    assert not (tmp_path / "runs").exists()
    assert tree_digest(demo_store) == before


@pytest.mark.parametrize("option, value", [("--seed", "-1"), ("--seed", str(2**32)), ("--seed", HUGE)])
def test_train_seed_out_of_range_is_a_usage_error(cli, demo_store, tmp_path, option, value):
    """--seed takes 0 to 2**32 - 1 (what every random generator clipclap feeds accepts)."""
    r = cli("train", "demo", "--store", demo_store, "--runs-dir", tmp_path / "runs", option, value)
    assert r.exit_code == 2 and "--seed" in r.stderr and "Traceback" not in r.stderr, r
    assert not (tmp_path / "runs").exists()


def test_largest_allowed_numbers_pass_the_checks():
    """The bounds are inclusive: the largest value of each count, a grid of MAX_GRID_POINTS."""
    values = {name: high for name, (low, high) in COUNT_RANGES.items() if name in TrainSettings.__dataclass_fields__}
    settings = check_train_settings(values | {"beta_grid": [0, 1e6, MAX_GRID_POINTS], "lr": 1, "weight_decay": 0})
    assert settings.epochs == COUNT_RANGES["epochs"][1] and settings.seed == 2**32 - 1
    assert settings.beta_grid == (0.0, 1e6, MAX_GRID_POINTS) and isinstance(settings.lr, float)
    assert parse_beta_grid("0:5:76") == DEFAULT_BETA_GRID and parse_beta_grid("0:3:16") == (0.0, 3.0, 16)
    assert parse_beta_grid("2:2:1") == (2.0, 2.0, 1)


# ---------------------------------------------------------------- the one check of TrainSettings

@pytest.mark.parametrize("field, value, problem", [
    ("epochs", "3", "epochs: expected a whole number, got '3'"),
    ("epochs", 3.0, "epochs: expected a whole number, got 3.0"),
    ("epochs", True, "epochs: expected a whole number, got True"),
    ("epochs", 0, "epochs must be at least 1, not 0"),
    ("epochs", 10**120, "epochs must be at most 100000"),
    ("batch_size", None, "batch_size: expected a whole number, got None"),
    ("batches_per_epoch", -2, "batches_per_epoch must be at least 1, not -2"),
    ("seed", -1, "seed must be at least 0, not -1"),
    ("seed", 2**32, "seed must be at most 4294967295, not 4294967296"),
    ("lr", "0.1", "lr: expected a number, got '0.1'"),
    ("lr", math.nan, "lr must be positive, not nan"),
    ("lr", math.inf, "lr must be a finite number, not inf"),
    ("lr", 0, "lr must be positive, not 0"),
    ("weight_decay", math.nan, "weight_decay must be a finite number, not nan"),
    ("weight_decay", -1e-5, "weight_decay must be at least 0, not -1e-05"),
    ("weight_decay", math.inf, "weight_decay must be a finite number, not inf"),
    ("replay_forward", "yes", "replay_forward: expected true or false, got 'yes'"),
    ("lr_scheduler", 1, "lr_scheduler: expected true or false, got 1"),
    ("device", 3, "device: expected a device name (cpu, cuda, cuda:N), got 3"),
    ("device", "", "device: expected a device name"),
    ("beta_grid", [0, math.nan, 10], "beta_grid START and STOP must be finite numbers, not 0 and nan"),
    ("beta_grid", [0, 5, 10**12], "beta_grid POINTS must be a whole number from 1 to 100000, not 1000000000000"),
    ("beta_grid", [0, 5, 7.5], "beta_grid POINTS must be a whole number from 1 to 100000, not 7.5"),
    ("beta_grid", [5, 0, 10], "beta_grid needs 0 <= START <= STOP <= 1e+06, not START 5 and STOP 0"),
    ("beta_grid", [-1, 0, 10], "beta_grid needs 0 <= START <= STOP"),
    ("beta_grid", [0, 5], "beta_grid must be START:STOP:POINTS, not [0, 5]"),
    ("beta_grid", "0:5:76", "beta_grid must be START:STOP:POINTS, not '0:5:76'"),
    ("stages", 2, "stages: not a training setting (valid: batch_size,"),
])
def test_check_train_settings_names_the_field(field, value, problem):
    """`check_train_settings` (what a run's config.json read back goes through) and
    `TrainSettings.checked` refuse a value of the wrong type, non-finite or out of range with a
    SettingError naming where and which field."""
    with pytest.raises(SettingError) as e:
        check_train_settings({field: value}, "run/config.json spec.train")
    assert str(e.value).startswith(f"run/config.json spec.train: {problem}"), str(e.value)
    assert e.value.key == field and isinstance(e.value, ClipclapError)
    if field in TrainSettings.__dataclass_fields__:
        with pytest.raises(SettingError) as e:
            TrainSettings(**{field: value}).checked("run X")
        assert str(e.value).startswith(f"run X: {problem}") and e.value.key == field


def test_check_train_settings_types_json_values():
    """As JSON holds them (a list for the grid, an int lr) the settings come back typed; not a
    table at all is one line too."""
    settings = check_train_settings({"beta_grid": [0, 3, 16], "lr": 1, "epochs": 2}, "x")
    assert settings == TrainSettings(beta_grid=(0.0, 3.0, 16), lr=1.0, epochs=2)
    assert type(settings.lr) is float and type(settings.beta_grid[0]) is float
    assert TrainSettings().checked() == TrainSettings()
    with pytest.raises(SettingError, match=r"^x: expected a table of training settings, not \[1, 2\]$"):
        check_train_settings([1, 2], "x")


def test_merged_settings_are_checked_naming_the_layer():
    """merge_settings checks the result: a bad value names the layer it came from (the command
    line's as its option), so no path that builds settings can skip the check."""
    with pytest.raises(SettingError, match=r"^--lr must be a finite number, not inf$"):
        merge_settings([("datasets.toml [datasets.x] train", {"epochs": 3}), ("command line", {"lr": math.inf})])
    with pytest.raises(SettingError, match=r"^mine.toml \[datasets.x\] train: epochs must be at least 1, not 0$"):
        merge_settings([("mine.toml [datasets.x] train", {"epochs": 0})])
    with pytest.raises(SettingError, match=r"^--beta-grid START and STOP must be finite"):
        merge_settings([("command line", {"beta_grid": (0.0, math.nan, 10)})])
    settings, sources = merge_settings([("d", {"epochs": 3}), ("command line", {"epochs": 4, "lr": None})])
    assert settings.epochs == 4 and sources["epochs"] == "command line" and sources["lr"] == "protocol"


def test_check_options_names_the_option():
    """What commands call first on their numbers: None is an option not given."""
    check_options({"epochs": None, "threads": 4, "jobs": 1, "seeds": 3, "beta_grid": (0, 5, 76)})
    for values, message in (({"threads": 10**30}, "--threads must be at most 4096, not 1000000000000"),
                            ({"jobs": 0}, "--jobs must be at least 1, not 0"),
                            ({"batches_per_epoch": -1}, "--batches-per-epoch must be at least 1, not -1"),
                            ({"lr": math.nan}, "--lr must be positive, not nan"),
                            ({"beta_grid": (0, math.inf, 3)}, "--beta-grid START and STOP must be finite"),
                            ({"seed": 2**32 - 2, "seeds": 3},
                             "--seed 4294967294 and --seeds 3 run seeds up to 4294967296, past 4294967295")):
        with pytest.raises(SettingError) as e:
            check_options(values)
        assert str(e.value).startswith(message) and e.value.key == next(iter(values))


def test_bias_grid_refuses_what_the_checks_refuse():
    """The metrics' grid is the last guard: a grid no command should have let through is a
    SettingError, not 745 GiB of linspace or a NaN beta."""
    from clipclap_cli.evaluate.metrics import bias_grid

    assert bias_grid(0, 5, 76).shape == (76,)
    for grid in ((0, math.nan, 10), (0, 5, 10**11), (0, math.inf, 3), (3, 1, 4)):
        with pytest.raises(SettingError, match="bias grid"):
            bias_grid(*grid)


# ---------------------------------------------------------------- -p KEY=VALUE and head parameters

@pytest.mark.parametrize("raw, message", [
    ("nan", "expected a finite number"), ("inf", "expected a finite number"), ("-inf", "expected a finite number"),
    ("1e999", "expected a finite number"), ("x", "expected float"),
])
def test_float_parameters_are_finite(raw, message):
    from clipclap_cli.params import parse_params
    from clipclap_plugins.clipclap_head import ClipClapHead

    with pytest.raises(ParamError, match=f"parameter dropout={raw!r}: {message}"):
        parse_params([f"dropout={raw}"], ClipClapHead.Params)


def test_int_parameters_fit_and_sizes_are_bounded():
    from clipclap_cli.params import MAX_SIZE, build_params, parse_params
    from clipclap_plugins.clipclap_head import ClipClapHead

    with pytest.raises(ParamError, match="expected a whole number from"):
        parse_params([f"hidden={HUGE}"], ClipClapHead.Params)
    with pytest.raises(ParamError, match=f"parameter hidden={MAX_SIZE + 1}: expected at most {MAX_SIZE}"):
        parse_params([f"hidden={MAX_SIZE + 1}"], ClipClapHead.Params)
    assert parse_params([f"hidden={MAX_SIZE}"], ClipClapHead.Params).hidden == MAX_SIZE
    # from TOML, a value of another type is refused, not converted (true is not 1, 5 not "5")
    for values in ({"hidden": True}, {"hidden": math.inf}, {"dropout": True}, {"modality": 5}):
        with pytest.raises(ParamError):
            build_params(ClipClapHead.Params, values)


# ---------------------------------------------------------------- datasets.toml, hand-edited

@pytest.mark.parametrize("body, needles", [
    ('[datasets]\nmine = 5\n', ["[datasets] mine = 5: expected a table"]),
    ('[datasets]\nmine = "synthetic"\n', ["[datasets] mine = 'synthetic': expected a table"]),
    ('[datasets.x]\nkind = 5\n', ["[datasets.x] kind: expected a format name (a string", "got 5"]),
    ('[datasets.x]\nkind = ["synthetic"]\n', ["[datasets.x] kind: expected a format name"]),
    ('[datasets.x]\nkind = "synthetic"\ndisplay_name = 3\n', ["[datasets.x] display_name: expected a string, got 3"]),
    ('[datasets.x]\nkind = "synthetic"\nsplit = 3\n', ["[datasets.x] split: expected a string, got 3"]),
    ('[datasets.x]\nkind = "synthetic"\nframe_recipe = true\n', ["[datasets.x] frame_recipe: expected a string"]),
    ('[datasets.x]\nkind = "synthetic"\nprompts = ["a"]\n', ["[datasets.x] prompts: expected a path (a string)"]),
    ('[datasets.x]\nkind = "synthetic"\ndims = 5\n', ["[datasets.x] dims: expected a table"]),
    ('[datasets.x]\nkind = "synthetic"\ndims = { video = true }\n', ["[datasets.x] dims.video", "got True"]),
    ('[datasets.x]\nkind = "synthetic"\ndims = { video = 1e3 }\n', ["[datasets.x] dims.video", "got 1000.0"]),
    ('[datasets.x]\nkind = "synthetic"\ndims = { audio = 10000000000000 }\n', ["[datasets.x] dims.audio"]),
    ('[datasets.x]\nkind = "synthetic"\ntrain = 5\n', ["[datasets.x] train: expected a table of training"]),
    ('[datasets.x]\nkind = "synthetic"\ntrain = { epochs = "3" }\n',
     ["[datasets.x] train: epochs: expected a whole number, got '3'"]),
    ('[datasets.x]\nkind = "synthetic"\ntrain = { epochs = 1e3 }\n', ["[datasets.x] train: epochs: expected a whole"]),
    ('[datasets.x]\nkind = "synthetic"\ntrain = { lr = nan }\n', ["[datasets.x] train.lr: must be positive, not nan"]),
    ('[datasets.x]\nkind = "synthetic"\ntrain = { lr = inf }\n', ["[datasets.x] train.lr: must be a finite number"]),
    ('[datasets.x]\nkind = "synthetic"\ntrain = { weight_decay = -1.0 }\n', ["[datasets.x] train.weight_decay"]),
    (f'[datasets.x]\nkind = "synthetic"\ntrain = {{ epochs = {2**62} }}\n',
     ["[datasets.x] train.epochs: must be at most"]),
    ('[datasets.x]\nkind = "synthetic"\ntrain = { seed = -1 }\n', ["[datasets.x] train.seed: must be at least 0"]),
    ('[datasets.x]\nkind = "synthetic"\ntrain = { replay_forward = 1 }\n', ["train: replay_forward: expected true"]),
    ('[datasets.x]\nkind = "synthetic"\nhead_train.tcaf = { batch_size = 0 }\n',
     ["[datasets.x] head_train.tcaf.batch_size: must be at least 1, not 0"]),
    ('[datasets.x]\nkind = "synthetic"\nhead_params.clipclap = { dropout = nan }\n',
     ["[datasets.x] head_params.clipclap.dropout: expected a finite number, got nan"]),
    ('[datasets.x]\nkind = "synthetic"\nhead_params.clipclap = { hidden = [1] }\n',
     ["[datasets.x] head_params.clipclap.hidden: expected a string, a number or true/false"]),
    ('[datasets.x]\nkind = "synthetic"\nhead_params = 3\n', ["[datasets.x] head_params: expected one table per head"]),
    ('[datasets.x]\nkind = "synthetic"\npublished.clipclap = { hm = nan }\n', ["published.clipclap.hm", "got nan"]),
    ('[datasets.x]\nkind = "synthetic"\npublished.clipclap = { hm = true }\n', ["published.clipclap.hm", "got True"]),
    ('[datasets.x]\nkind = "synthetic"\nseed = "5"\n', ["[datasets.x]: parameter seed='5'"]),  # TOML: no strings
    ('[datasets.x]\nkind = "synthetic"\nnoise = nan\n', ["[datasets.x]: parameter noise=nan: expected a finite"]),
    ('[datasets.x]\nkind = "synthetic"\nseed = true\n', ["[datasets.x]: parameter seed=True: expected int"]),
    ('[datasets.x]\nkind = "released-features"\ntext_tag = 5\n',
     ["[datasets.x]: parameter text_tag=5: expected a string"]),
    ('[datasets.ucf]\nfrom = 3\n', ["[datasets.ucf] from: expected the name of a definition (a string), got 3"]),
])
def test_datasets_file_fields_of_the_wrong_type_are_named(pm, tmp_path, body, needles):
    from clipclap_cli.data.datasets_toml import load_catalog

    user = tmp_path / "bad.toml"
    user.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_catalog(pm, user)
    assert str(e.value).startswith(str(user)), str(e.value)
    for needle in needles:
        assert needle in str(e.value), str(e.value)


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


@pytest.mark.parametrize("command", [("datasets", "list"), ("demo", "--no-train")])
def test_datasets_file_not_utf8_or_not_a_table_is_one_line_and_nothing_written(cli, tmp_path, command):
    """A datasets file saved as Latin-1, or with a non-table entry: one line naming the file
    (and the entry), exit 1, no store made."""
    store = tmp_path / "s.zarr"
    for content, needle in ((_latin1('[datasets.x]\nkind = "synthetic"\ndisplay_name = "Caf\u00e9"\n'),
                             "not a UTF-8 text file (byte 0xe9 on line 3)"),
                            (b"[datasets]\nmine = 5\n", "[datasets] mine = 5: expected a table")):
        user = tmp_path / "mine.toml"
        user.write_bytes(content)
        line = one_error_line(cli(*command, "--datasets", user, "--store", store) if command[0] == "demo"
                               else cli(*command, "--datasets", user))
        assert line.startswith(f"Error: {user}") and needle in line, line
        assert not store.exists()


def test_datasets_file_unreadable_is_one_line(pm, tmp_path):
    from clipclap_cli.data.datasets_toml import load_catalog

    with pytest.raises(ConfigError, match="cannot read this datasets file"):
        load_catalog(pm, tmp_path)  # a folder
    with pytest.raises(ConfigError, match="no such datasets file"):
        load_catalog(pm, tmp_path / "none.toml")


# ---------------------------------------------------------------- prompt files, hand-edited

@pytest.mark.parametrize("templates, needle", [
    (["a photo of {x}"], "templates[0] = 'a photo of {x}': unknown placeholder {x}"),
    (["a {} here", "a lone } brace {}"], "templates[1] = 'a lone } brace {}': a lone '{' or '}'"),
    (["a lone { brace {}"], "templates[0] = 'a lone { brace {}': a lone '{' or '}'"),
    (["{0}"], "unknown placeholder {0}"),
    (["{:>9}"], "unknown placeholder {:>9}"),
    (["{!r}"], "unknown placeholder {!r}"),
    (["{} and {}"], "'{}' more than once"),
    (["no placeholder"], "no '{}' for the class name"),
    (["{{}} escaped"], "no '{}' for the class name"),
    ([5], "templates[0] = 5: expected a string"),
    ([], "templates: expected a list of strings"),
    ("a {}", "templates: expected a list of strings"),
])
def test_prompt_templates_are_checked(tmp_path, templates, needle):
    from clipclap_cli.data.label_embeddings import read_templates

    path = tmp_path / "prompts.toml"
    path.write_text("[clip_text]\ntemplates = " + json.dumps(templates) + "\n")
    with pytest.raises(ConfigError) as e:
        read_templates(path, "clip_text")
    assert str(e.value).startswith(f"{path} [clip_text] ") and needle in str(e.value), str(e.value)


def test_good_templates_pass(tmp_path):
    from clipclap_cli.data.label_embeddings import read_templates

    path = tmp_path / "prompts.toml"
    path.write_text('[clip_text]\ntemplates = ["a photo of {}.", "{{literal}} {}", "{}"]\n')
    templates = read_templates(path, "clip_text")
    assert [t.format("dog") for t in templates] == ["a photo of dog.", "{literal} dog", "dog"]


@pytest.mark.parametrize("content, needle", [
    (_latin1('[clip_text]\ntemplates = ["caf\u00e9 {}"]\n'), "not a UTF-8 text file (byte 0xe9 on line 2)"),
    (b'[clip_text]\ntemplates = ["a {x}"]\n', "[clip_text] templates[0] = 'a {x}': unknown placeholder {x}"),
    (b'[clip_text]\ntemplates = ["a }"]\n', "[clip_text] templates[0] = 'a }': a lone '{' or '}'"),
    (b'clip_text = 5\n', "[clip_text] templates: expected a list of strings"),
    (b'[clip_text\n', "not valid TOML"),
])
def test_embed_with_a_bad_prompts_file_is_one_line_and_writes_nothing(cli, demo_store, tmp_path, content, needle):
    store = tmp_path / "s.zarr"
    shutil.copytree(demo_store, store)
    before = tree_digest(store)
    prompts = tmp_path / "prompts.toml"
    prompts.write_bytes(content)
    line = one_error_line(cli("embed", "demo", "--store", store, "--prompts", prompts))
    assert line.startswith(f"Error: {prompts}") and needle in line, line
    assert tree_digest(store) == before


# ---------------------------------------------------------------- the session's JSON walk (conftest)

def test_the_json_walk_finds_nan_and_infinity():
    """The session-end walk (conftest.pytest_sessionfinish) can fail: it finds NaN and Infinity
    in .json and .jsonl files and leaves other files alone. Planted outside the session's
    temporary folder, so that the session itself stays clean."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "a").mkdir()
        (root / "a" / "results.json").write_text('{"test": {"beta": NaN}}')
        (root / "metrics.jsonl").write_text('{"epoch": 1}\n\n{"loss": -Infinity}\n')
        (root / "fine.json").write_text(json.dumps({"beta": 1.5, "s": "NaN"}))
        (root / "cut.json").write_text('{"beta": 1')  # damaged, not non-finite
        (root / "notes.txt").write_text("NaN")
        (root / "damaged-run").mkdir()
        (root / "damaged-run" / "config.json").write_text('{"lr": NaN}')  # planted on purpose: left alone
        assert non_finite_json(root / "a" / "results.json") == "NaN"
        assert non_finite_json(root / "metrics.jsonl") == "line 3: -Infinity"
        assert non_finite_json(root / "fine.json") is None and non_finite_json(root / "cut.json") is None
        found = non_finite_json_files(root)
        assert found == [f"{root / 'a' / 'results.json'} (NaN)", f"{root / 'metrics.jsonl'} (line 3: -Infinity)"]


@pytest.mark.parametrize("option, value, says", [
    ("--frames", "0", "from 1 to 1,000"), ("--batch-size", "99999999999", "from 1 to 1,000,000"),
    ("--workers", "5000", "from 0 to 4,096"), ("--chunk", "0", "from 1 to 10,000,000"),
])
def test_extract_counts_are_bounded_before_any_work(cli, tmp_path, option, value, says):
    """extract's counts outside what a machine can hold are refused naming the option, and no
    store is made."""
    r = cli("extract", "demo", option, value, "--store", tmp_path / "s.zarr")
    assert r.exit_code == 2 and f"Invalid value for '{option}': {value} is not a whole number {says}" in r.stderr, r
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("command", [
    ("train", "demo", "--threads", "99999"), ("train", "demo", "--lr", "inf"),
    ("train", "demo", "--beta-grid", "0:nan:3"), ("demo", "--epochs", "999999999"),
])
def test_train_and_demo_refuse_bad_numbers_before_any_work(cli, tmp_path, command):
    """Nothing is generated, read or written before the numbers are checked: no store, no runs."""
    r = cli(*command, "--store", tmp_path / "s.zarr", "--runs-dir", tmp_path / "runs")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r
    assert command[-2] in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
