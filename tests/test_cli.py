"""The CLI surface: help everywhere, fast import, typed errors, the store option."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clipclap_cli.store.feature_store import FeatureStore

COMMANDS = ["extract", "import", "split", "embed", "train", "evaluate", "predict", "export", "report", "verify", "demo",
            "datasets", "encoders", "heads", "plugins", "docs"]
SUBCOMMANDS = [["datasets", "list"], ["datasets", "show"], ["datasets", "kinds"], ["encoders", "list"],
               ["heads", "list"]]


def test_top_level_help_lists_every_command(cli):
    r = cli("--help")
    assert r.exit_code == 0
    for command in COMMANDS:
        assert command in r.stdout


@pytest.mark.parametrize("command", [[c] for c in COMMANDS] + SUBCOMMANDS, ids=" ".join)
def test_every_command_has_help(cli, command):
    r = cli(*command, "--help")
    assert r.exit_code == 0, r
    assert "Usage" in r.stdout


def test_help_reads_whole_in_80_columns(cli, monkeypatch):
    """Flags show as flags (not as options taking a <bool>), options name what they take (N, DIR,
    START:STOP:POINTS, not <int range> or <str>), option names are never cut, and the command
    lists give each command's whole first sentence, on an 80-column terminal."""
    monkeypatch.setenv("COLUMNS", "80")
    for command in [[c] for c in COMMANDS] + SUBCOMMANDS:
        text = cli(*command, "--help").stdout
        assert "<bool>" not in text and "…" not in text, (command, text)
        assert "<" not in text.partition("Options:")[2], (command, text)
    for group in ([], ["datasets"], ["encoders"], ["heads"]):
        listed = cli(*group, "--help").stdout.split("Commands:")[1].strip().splitlines()
        assert all(line.rstrip().endswith(".") and not line.rstrip().endswith("...") for line in listed), listed
    assert "--replay-forward / --no-replay-forward" in cli("train", "--help").stdout


def test_version_is_the_installed_distributions(cli):
    """`clipclap --version` prints the version pip installed (pyproject reads it from
    clipclap_cli.__version__, so the two cannot drift apart), before and without any command."""
    from importlib.metadata import version

    r = cli("--version")
    assert r.exit_code == 0, r
    assert r.stdout == f"clipclap {version('clipclap')}\n"
    assert cli("--version", "train", "--help").stdout == r.stdout


def test_importing_the_cli_does_not_import_torch():
    code = "import clipclap_cli.cli, clipclap_cli, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", [["--help"], ["extract", "--help"], ["plugins", "--help"]])
def test_help_does_not_import_torch_open_clip_or_the_decoder(command):
    """open_clip's import alone costs seconds on a cold start: help never pays it."""
    code = ("import sys; from clipclap_cli.cli import run; "
            "from clipclap_cli.plugins.manager import make_plugin_manager; "
            f"run({command!r}, make_plugin_manager(entrypoints=False)); "
            "heavy = [m for m in ('torch', 'open_clip', 'torchvision', 'av', 'cv2') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_error_is_one_red_line_and_exit_1(cli, tmp_path):
    r = cli("datasets", "show", "demo", "--store", tmp_path / "empty.zarr")
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: dataset 'demo' is not in the store")
    assert "holds no dataset yet" in r.stderr and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_show_of_a_name_nothing_defines_says_so(cli, tmp_path):
    """A name neither stored nor defined is unknown (not "import it first", which would fail)."""
    r = cli("datasets", "show", "nosuch", "--store", tmp_path / "empty.zarr")
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: unknown dataset 'nosuch'. Available: activitynet, demo, ucf, vggsound")


def test_debug_env_gives_traceback(tmp_path):
    cmd = [sys.executable, "-m", "clipclap_cli", "datasets", "show", "demo", "--store", str(tmp_path / "x")]
    r = subprocess.run(cmd, capture_output=True, text=True, env={"CLIPCLAP_DEBUG": "1", "PATH": ""})
    assert r.returncode == 1 and "Traceback" in r.stderr and "StoreError" in r.stderr


def test_usage_error_exit_2(cli):
    assert cli("import").exit_code == 2
    assert cli("no-such-command").exit_code == 2


def test_store_from_env_and_default(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPCLAP_STORE", str(tmp_path / "env.zarr"))
    assert cli("demo", "--no-train").exit_code == 0
    assert FeatureStore(tmp_path / "env.zarr").datasets() == ["demo"]
    monkeypatch.delenv("CLIPCLAP_STORE")
    monkeypatch.chdir(tmp_path)
    rows = json.loads(cli("datasets", "list", "--json").stdout)
    assert not any(r["in_store"] for r in rows)  # ./clipclap.zarr does not exist yet


@pytest.mark.parametrize(("url", "says"), [("s3://bucket/features.zarr", "s3fs"), ("gs://bucket/f.zarr", "gcsfs"),
                                           ("nosuch://bucket/f.zarr", "Protocol not known: nosuch")])
def test_object_store_without_its_fsspec_package_is_one_clear_error(cli, tmp_path, monkeypatch, url, says):
    for package in ("s3fs", "gcsfs"):
        monkeypatch.setitem(sys.modules, package, None)  # not installed, wherever the tests run
    monkeypatch.chdir(tmp_path)
    for args in (["demo", "--no-train", "--store", url], ["datasets", "list", "--store", url]):
        r = cli(*args)
        assert r.exit_code == 1, r
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: cannot open the store {url}: ") and says in lines[0]
    assert list(tmp_path.iterdir()) == []  # no local folder named "s3:" (Path folds "s3://" into "s3:/")


def test_file_url_is_a_folder(cli, tmp_path):
    assert cli("demo", "--no-train", "--store", f"file://{tmp_path}/f.zarr").exit_code == 0
    assert FeatureStore(tmp_path / "f.zarr").datasets() == ["demo"]  # the folder, not a URL's store


def test_list_commands_take_json(cli):
    for args in (["datasets", "kinds"], ["encoders", "list"], ["heads", "list"], ["plugins", "--all"]):
        r = cli(*args, "--json")
        assert r.exit_code == 0, (args, r)
        assert isinstance(json.loads(r.stdout), list)


def test_plugins_without_third_party_ones_says_so(cli):
    """No empty table: the line says none is installed; --all lists the built-in plugins."""
    r = cli("plugins")
    assert r.exit_code == 0 and r.stdout.startswith("no third-party plugin is installed"), r
    assert json.loads(cli("plugins", "--json").stdout) == []
    names = [p["name"] for p in json.loads(cli("plugins", "--all", "--json").stdout)]
    assert "clipclap_plugins.heads" in names and "clipclap_plugins.datasets" in names


def test_report_without_runs_names_the_folder_it_searched(cli, tmp_path):
    r = cli("report", "--runs-dir", tmp_path / "runs")
    assert r.exit_code == 1 and r.stderr.strip() == (
        f"Error: no runs folder {tmp_path / 'runs'} (searched when no RUN is given; `clipclap train` writes runs "
        "there, --runs-dir names another)")
    r = cli("report", tmp_path / "nosuch")  # a run named on the command line
    assert r.exit_code == 1 and r.stderr.strip() == f"Error: {tmp_path / 'nosuch'}: no such run or folder"


def test_encoders_list_says_which_serve_embed(cli):
    rows = {r["id"]: r for r in json.loads(cli("encoders", "list", "--json").stdout)}
    assert {k: r["label_embeddings"] for k, r in rows.items()} == {"clip": True, "clap": True,
                                                                   "random-projection": False, "demo-text": True}


def test_heads_params_listed(cli):
    rows = json.loads(cli("heads", "list", "--params", "--json").stdout)
    params = {p["name"]: p for p in next(r for r in rows if r["id"] == "clipclap")["params"]}
    assert params["modality"]["default"] == "both" and "Input modalities" in params["modality"]["doc"]



def test_every_command_gives_typer_real_annotations(pm):
    """Typer reads each option from its command's annotations. String annotations (`from
    __future__ import annotations` in a command module) cost it an eval apiece every time the
    command line is built (clipclap_cli.cli's docstring): each command's are objects."""
    import inspect

    from clipclap_cli.cli import make_app

    def callbacks(app):
        yield app.registered_callback.callback if app.registered_callback else None
        yield from (c.callback for c in app.registered_commands)
        for group in app.registered_groups:
            yield from callbacks(group.typer_instance)

    found = [f for f in callbacks(make_app(pm)) if f is not None]
    assert len(found) >= 20  # the app's own options and every command
    strings = [f"{f.__module__}.{f.__name__}: {name}" for f in found
               for name, value in inspect.get_annotations(f).items() if isinstance(value, str)]
    assert strings == []
