"""Plugins that cannot break the tool (issue "Plugins that cannot break the tool"): a plugin that
fails to load or to register costs one warning line naming it and the reason, and is left out
of every command alike; every other plugin and every built-in works.

The broken plugins are real installed distributions (a .dist-info folder with an entry point,
on PYTHONPATH), made here, each broken the way real plugins break."""

from __future__ import annotations

import json
import subprocess

import pytest

from broken_heads import BROKEN_HEADS, broken_head
from clipclap_cli import DatasetAdapter, hookimpl
from clipclap_cli.plugins.manager import failures
from clipclap_cli.plugins.registry import list_dataset_kinds, list_heads
from helpers import register_plugin
from installed_plugins import VENV_BIN, clipclap, environment, install

BROKEN = {
    "importfails": ("cannot be imported (ModuleNotFoundError: No module named 'missing_dependency'",
                    "import missing_dependency\n"),
    "exits": ("cannot be imported (SystemExit: 3", "import sys\nsys.exit(3)\n"),
    "misspelt": ("'register_head', which is not a clipclap hook (did you mean 'register_heads'?)", """
        from clipclap_cli import hookimpl

        @hookimpl
        def register_head(register):
            pass
        """),
    "badargs": ("register_heads(registr) Argument(s) {'registr'} are declared in the hookimpl but can not be found "
                "in the hookspec", """
        from clipclap_cli import hookimpl

        @hookimpl
        def register_heads(registr):
            pass
        """),
    "lazyimport": ("its register_heads hook failed (ModuleNotFoundError: No module named 'missing_dependency')", """
        from clipclap_cli import hookimpl

        @hookimpl
        def register_heads(register):
            import missing_dependency  # the lazy import the docs recommend, of a package not installed
        """),
    "noid": ("has no `head_id`", """
        from clipclap_cli import hookimpl

        class Nameless:
            pass

        @hookimpl
        def register_heads(register):
            register(Nameless)
        """),
    "wrongcall": ("its register_heads hook failed (TypeError", """
        from clipclap_cli import hookimpl

        @hookimpl
        def register_heads(register):
            register()
        """),
}
GOOD = """
    from clipclap_cli import hookimpl

    @hookimpl
    def register_heads(register):
        from clipclap_plugins.clipclap_head import ClipClapHead

        class Good(ClipClapHead):
            head_id = "good-head"

        register(Good)
    """


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plugins")
    for name, (_, source) in BROKEN.items():
        install(root, name, source)
    install(root, "good", GOOD)
    return environment(root)


def _warnings(stderr: str) -> dict[str, str]:
    lines = stderr.strip().splitlines()
    assert all(line.startswith("Warning: plugin ") for line in lines), stderr
    return {line.split("'")[1]: line for line in lines}


def test_broken_plugins_cost_one_named_warning_each_and_nothing_else(installed):
    r = clipclap(installed, "heads", "list", "--json")
    assert r.returncode == 0, r.stderr
    heads = {h["id"]: h["plugin"] for h in json.loads(r.stdout)}
    assert heads["clipclap"] == "clipclap_plugins.heads"  # the built-in, not the impostor
    assert heads["good-head"] == "good" and "avca" in heads
    warned = _warnings(r.stderr)
    assert sorted(warned) == sorted(BROKEN), r.stderr
    for name, (reason, _) in BROKEN.items():
        line = warned[name]
        assert f"plugin '{name}' of clipclap-{name} 1.0 is left out: " in line, line
        assert reason in line, (name, line)
        assert "Traceback" not in r.stderr


def test_help_works_with_broken_plugins_and_warns_about_those_it_loads(installed):
    r = clipclap(installed, "--help")
    assert r.returncode == 0 and "train" in r.stdout, r.stderr
    # --help loads the plugins (their commands) but calls no registering hook: the plugins that
    # fail to load are named; those whose hooks fail are found out by the commands that call them
    assert set(_warnings(r.stderr)) == {"importfails", "exits", "misspelt", "badargs"}, r.stderr


def test_the_plugins_command_lists_the_failed_ones_with_their_reason(installed):
    r = clipclap(installed, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    rows = {p["name"]: p for p in json.loads(r.stdout)}
    assert rows["good"]["status"] == "ok" and rows["good"]["distribution"] == "clipclap-good 1.0"
    for name, (reason, _) in BROKEN.items():
        assert rows[name]["status"].startswith("failed: ") and reason in rows[name]["status"], rows[name]


def test_training_works_beside_broken_plugins(installed, demo_store, tmp_path):
    r = clipclap(installed, "train", "demo", "--store", demo_store, "--runs-dir", tmp_path,
                  "--head", "clipclap,good-head", "--epochs", "1", "--batches-per-epoch", "2")
    assert r.returncode == 0, r.stderr
    assert {p.parent.parent.name for p in tmp_path.rglob("results.json")} == {
        "clipclap,epochs=1,batches-per-epoch=2", "good-head,epochs=1,batches-per-epoch=2"}
    assert len([line for line in r.stderr.splitlines() if line.startswith("Warning:")]) == len(BROKEN)


def test_debug_shows_the_traceback(installed):
    r = clipclap(installed | {"CLIPCLAP_DEBUG": "1"}, "heads", "list")
    assert r.returncode == 0 and "Traceback (most recent call last)" in r.stderr
    assert "import missing_dependency" in r.stderr


def test_a_plugin_registered_by_hand_is_isolated_too(pm):
    """In process (a script that builds its own manager): the broken plugin's hook is left out
    and recorded; the built-in heads are all there."""
    class Broken:
        @hookimpl
        def register_heads(self, register):
            raise RuntimeError("boom")

    pm.register(Broken(), name="broken")
    heads = list_heads(pm)
    assert "clipclap" in heads and "avca" in heads
    [failure] = failures(pm)
    assert failure.plugin == "broken" and failure.reason == "its register_heads hook failed (RuntimeError: boom)"
    assert not pm.has_plugin("broken")  # left out whole: none of its hooks runs in this command


def test_load_plugins_env_still_selects_among_the_installed(installed, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", installed["PYTHONPATH"])
    code = ("from clipclap_cli.plugins.manager import make_plugin_manager, failures; "
            "pm = make_plugin_manager(); print(sorted(pm.get_name(p) for p in pm.get_plugins()), "
            "[f.plugin for f in failures(pm)])")
    env = installed | {"CLIPCLAP_LOAD_PLUGINS": "good,importfails"}
    out = subprocess.run([str(VENV_BIN / "python"), "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "'good'" in out.stdout and "['importfails']" in out.stdout and "misspelt" not in out.stdout, out.stdout


@pytest.mark.parametrize("case", sorted(BROKEN_HEADS))
def test_a_head_breaking_its_contract_stops_the_run_with_a_short_named_error(cli, pm, demo_store, tmp_path, case):
    methods, came = BROKEN_HEADS[case]
    head = broken_head(**methods)

    register_plugin(pm, "brokenheads", heads=[head])
    r = cli("train", "demo", "--head", "broken-head", "--store", demo_store, "--runs-dir", tmp_path,
            "--epochs", "1", "--batches-per-epoch", "2", manager=pm)
    lines = r.stderr.strip().splitlines()
    error = lines[lines.index(next(x for x in lines if x.startswith("Error:"))):]
    assert r.exit_code == 1 and len(error) == 3, r.stderr
    assert error[0].startswith("Error: fusion head 'broken-head' (module ") and "broke its contract" in error[0]
    assert error[1].strip().startswith("expected: ") and came in error[2], (case, error)
    assert not list(tmp_path.rglob("results.json"))


def _raises(*args, **kwargs):
    raise RuntimeError("plugin bug")


RAISING_HEADS = {  # method replaced -> (the call the error names, extra train options)
    "loss": ("loss", ()),
    "replay_forward": ("replay_forward", ()),
    "distances": ("distances", ()),
    "stacked": ("stacked()", ("--seeds", "2")),
}


@pytest.mark.parametrize("method", sorted(RAISING_HEADS))
def test_a_head_whose_code_raises_stops_the_run_with_one_named_line(cli, pm, demo_store, tmp_path, method):
    """Whatever a head's own code raises while a run trains or evaluates (the loss, the replay
    forward, the distances, building its stacked form) is one error line naming the head and
    the call, not a traceback; no results are written."""
    call, extra = RAISING_HEADS[method]
    head = broken_head(**{method: classmethod(_raises) if method == "stacked" else _raises})

    register_plugin(pm, "raisingheads", heads=[head])
    r = cli("train", "demo", "--head", "broken-head", "--store", demo_store, "--runs-dir", tmp_path,
            "--epochs", "1", "--batches-per-epoch", "2", *extra, manager=pm)
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert r.exit_code == 1 and "Traceback" not in r.stderr, r.stderr
    assert errors[0] == (f"Error: fusion head 'broken-head' (module broken_heads): {call} raised RuntimeError: "
                         "plugin bug"), r.stderr
    assert not list(tmp_path.rglob("results.json"))


# ---------------------------------------------------------------- left out of every command alike
HALF = """
    from clipclap_cli.api import DatasetAdapter, hookimpl
    {top}

    class Tiny(DatasetAdapter):
        kind = "tiny-kind"


    @hookimpl
    def register_dataset_kinds(register):
        register(Tiny)


    @hookimpl
    def register_dataset_entries(register):
        register("tiny", {{"kind": "tiny-kind", "dims": {{"audio": 4, "video": 4, "clip": 4, "clap": 4}}}})


    @hookimpl
    def register_heads(register):
        {heads}
    """
HALVES = {  # plugin -> (its module's extra top line, its heads hook's body, the notice's reason)
    "whole": ("", "pass", None),
    "headsfail": ("", "import missing_dependency", "its register_heads hook failed (ModuleNotFoundError: No module "
                                                    "named 'missing_dependency')"),
    "headsbad": ("", "register(Tiny)", "has no `head_id`"),
    "importfails": ("import missing_dependency", "pass", "it cannot be imported (ModuleNotFoundError: No module "
                                                         "named 'missing_dependency'"),
}


@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("halves")
    for name, (top, heads, _) in HALVES.items():
        install(root, name, HALF.format(top=top, heads=heads))
    return environment(root)


@pytest.mark.parametrize("plugin", [p for p in HALVES if p != "whole"])
def test_a_plugin_left_out_is_left_out_of_every_command_alike(halves, plugin, tmp_path):
    """A plugin that registers a dataset format, a dataset and a head, and whose head hook fails
    (or whose module does not import), is absent from every command, whichever registry the
    command reads first, with the same one-line notice: `datasets list` does not show the dataset
    that `import` and `train` then call unknown."""
    env = halves | {"CLIPCLAP_LOAD_PLUGINS": plugin}
    notice = f"Warning: plugin '{plugin}' of clipclap-{plugin} 1.0 is left out: "
    store = tmp_path / "s.zarr"
    listed = clipclap(env, "datasets", "list", "--json")
    kinds = clipclap(env, "datasets", "kinds", "--json")
    heads = clipclap(env, "heads", "list", "--json")
    imported = clipclap(env, "import", "tiny", tmp_path, "--store", store)
    trained = clipclap(env, "train", "tiny", "--store", store, "--runs-dir", tmp_path / "runs")
    plugins = clipclap(env, "plugins", "--json")
    [row] = [r for r in json.loads(plugins.stdout) if r["name"] == plugin]
    assert row["status"].startswith("failed: ") and HALVES[plugin][2] in row["status"], row
    assert "tiny" not in [d["name"] for d in json.loads(listed.stdout)], listed.stdout
    assert "tiny-kind" not in [k["kind"] for k in json.loads(kinds.stdout)]
    assert plugin not in [h["plugin"] for h in json.loads(heads.stdout)]
    for r in (imported, trained):
        assert r.returncode == 1 and "Error: unknown dataset 'tiny'. Available: " in r.stderr, r.stderr
    first_lines = set()
    for r in (listed, kinds, heads, imported, trained, plugins):
        lines = r.stderr.splitlines()
        assert not [x for x in lines[1:] if x.startswith("Warning:")], r.stderr
        first_lines.add(lines[0])
    [line] = first_lines  # the same notice in every command
    assert line.startswith(notice) and HALVES[plugin][2] in line, line
    assert not store.exists()


def test_the_same_plugin_whole_is_in_every_command(halves):
    """The control: the plugin above, its head hook working, shows its dataset and format."""
    env = halves | {"CLIPCLAP_LOAD_PLUGINS": "whole"}
    listed = clipclap(env, "datasets", "list", "--json")
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    assert {"name": "tiny", "kind": "tiny-kind", "plugin": "whole"}.items() <= {
        d["name"]: d for d in json.loads(listed.stdout)}["tiny"].items()
    assert "tiny-kind" in [k["kind"] for k in json.loads(clipclap(env, "datasets", "kinds", "--json").stdout)]


def test_a_plugin_left_out_by_one_hook_registers_nothing_in_process(pm):
    """In process: the first registry read leaves out a plugin whose other registering hook
    fails, so its dataset kind is not in the kinds registry built first."""
    class Adapter(DatasetAdapter):
        kind = "half-kind"

    class Half:
        @hookimpl
        def register_dataset_kinds(self, register):
            register(Adapter)

        @hookimpl
        def register_encoders(self, register):
            raise RuntimeError("boom")

    pm.register(Half(), name="half")
    assert "half-kind" not in list_dataset_kinds(pm)
    [failure] = failures(pm)
    assert (failure.plugin, failure.reason) == ("half", "its register_encoders hook failed (RuntimeError: boom)")
    assert not pm.has_plugin("half")
