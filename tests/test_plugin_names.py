"""Names several plugins register, and hooks whose names say what they register (issue "Plugins
that cannot break the tool", points 2 and 5): a shared name keeps both registrations, listed with
their distributions; using it bare is an error naming both and the `SOURCE:NAME` that picks one;
every other name works. The old hook name `register_datasets` still works, with a warning."""

from __future__ import annotations

import json

import pytest

from clipclap_cli import __version__, hookimpl
from clipclap_cli.errors import AmbiguousNameError, UnknownNameError
from clipclap_cli.plugins.manager import failures
from clipclap_cli.plugins.registry import list_dataset_kinds, list_heads
from installed_plugins import clipclap, environment, install

COPYCAT = """
    from clipclap_cli import __version__, hookimpl

    @hookimpl
    def register_heads(register):
        from clipclap_plugins.clipclap_head import ClipClapHead

        class Impostor(ClipClapHead):
            "A copy of the ClipClap head under its name."
            head_id = "clipclap"

        class Own(ClipClapHead):
            "A head only this plugin has."
            head_id = "copycat-own"

        register(Impostor)
        register(Own)

    @hookimpl
    def register_dataset_entries(register):
        register("demo", {"kind": "synthetic", "display_name": "Another demo", "videos_per_class": 20})
    """
OLD_HOOK = """
    from clipclap_cli import __version__, hookimpl
    from clipclap_cli.api import DatasetAdapter

    class Legacy(DatasetAdapter):
        kind = "legacy-kind"

    @hookimpl
    def register_datasets(register):
        register(Legacy)
    """


def _others(stderr: str) -> list[str]:
    """stderr's lines but the deprecation warning of the `oldhook` plugin, shown by every command."""
    return [line for line in stderr.strip().splitlines() if "'oldhook'" not in line]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("named")
    install(root, "copycat", COPYCAT)
    install(root, "oldhook", OLD_HOOK)
    return environment(root)


def test_a_shared_head_name_lists_both_and_refuses_the_bare_name_naming_both(env, demo_store, tmp_path):
    r = clipclap(env, "heads", "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = [(h["id"], h["plugin"], h["distribution"]) for h in json.loads(r.stdout) if h["id"] == "clipclap"]
    assert sorted(rows) == [("clipclap", "clipclap_plugins.heads", f"clipclap {__version__}"),
                            ("clipclap", "copycat", "clipclap-copycat 1.0")]
    assert "copycat" not in r.stderr  # a shared name leaves nobody out
    r = clipclap(env, "train", "demo", "--store", demo_store, "--runs-dir", tmp_path, "--epochs", "1")
    assert r.returncode == 1 and len(_others(r.stderr)) == 1, r.stderr
    assert (f"fusion head 'clipclap' is registered by the built-ins (clipclap {__version__}) and by plugin 'copycat' "
            "(clipclap-copycat 1.0); pick one: 'clipclap:clipclap' or 'clipclap-copycat:clipclap'") in r.stderr
    assert not list(tmp_path.iterdir())


def test_a_qualified_name_picks_one_and_every_other_name_works(env, demo_store, tmp_path):
    short = ("--epochs", "1", "--batches-per-epoch", "2")
    ours = tmp_path / "ours.toml"  # the plugin defines a `demo` too: the project's is picked
    ours.write_text('[datasets.demo]\nfrom = "clipclap"\n')
    short += ("--datasets", ours)
    r = clipclap(env, "train", "demo", "--store", demo_store, "--runs-dir", tmp_path,
                 "--head", "clipclap-copycat:clipclap,copycat-own,clipclap:clipclap", *short)
    assert r.returncode == 0, r.stderr
    folders = {p.parent.parent.name for p in tmp_path.rglob("results.json")}
    assert folders == {f"{head},epochs=1,batches-per-epoch=2"
                       for head in ("clipclap-copycat.clipclap", "copycat-own", "clipclap.clipclap")}
    picked = json.loads(next(tmp_path.glob("demo/clipclap-copycat.clipclap*/seed42/config.json")).read_text())
    assert picked["spec"]["head"] == "clipclap-copycat:clipclap"
    # the picked run is evaluated again with the registration it was trained with
    run = next(tmp_path.glob("demo/clipclap-copycat.clipclap*/seed42"))
    r = clipclap(env, "evaluate", run, "--store", demo_store, "--json", "--datasets", ours)
    assert r.returncode == 0, r.stderr


def test_a_dataset_defined_twice_is_listed_twice_and_picked_in_the_users_file(env, tmp_path):
    r = clipclap(env, "datasets", "list", "--json", "--store", tmp_path / "s.zarr")
    demos = [(d["display_name"], d["defined_in"]) for d in json.loads(r.stdout) if d["name"] == "demo"]
    assert sorted(demos) == [("Another demo", "plugin copycat (clipclap-copycat 1.0)"),
                             ("Demo (synthetic, UCF-shaped)", "clipclap (datasets.toml)")], r.stdout
    r = clipclap(env, "demo", "--no-train", "--store", tmp_path / "s.zarr")
    assert r.returncode == 1 and "dataset 'demo' is defined by" in r.stderr and 'from = "clipclap-copycat"' in r.stderr
    assert not (tmp_path / "s.zarr").exists()
    mine = tmp_path / "mine.toml"
    mine.write_text('[datasets.demo]\nfrom = "clipclap-copycat"\n')
    r = clipclap(env, "demo", "--no-train", "--store", tmp_path / "s.zarr", "--datasets", mine)
    assert r.returncode == 0, r.stderr
    r = clipclap(env, "datasets", "show", "demo", "--store", tmp_path / "s.zarr", "--json")
    assert json.loads(r.stdout)["classes"] == 48 and json.loads(r.stdout)["videos"] < 48 * 40


def test_the_old_hook_name_works_with_a_warning_naming_the_plugin(env):
    r = clipclap(env, "datasets", "kinds", "--json")
    assert r.returncode == 0 and "legacy-kind" in {k["kind"] for k in json.loads(r.stdout)}
    assert r.stderr.strip() == ("Warning: plugin 'oldhook' of clipclap-oldhook 1.0 implements register_datasets, "
                                "renamed register_dataset_kinds (the old name works until clipclap 0.4; rename the "
                                "function)"), r.stderr
    rows = {p["name"]: p["status"] for p in json.loads(clipclap(env, "plugins", "--json").stdout)}
    assert rows["oldhook"].startswith("ok (warning: implements register_datasets")


def test_tracing_shows_what_each_register_hook_registered(env):
    r = clipclap(env | {"CLIPCLAP_TRACE_PLUGINS": "1"}, "heads", "list", "--json")
    assert "clipclap plugins: copycat register_heads: fusion head 'clipclap', 'copycat-own'" in r.stderr
    assert "clipclap plugins: clipclap_plugins.heads register_heads: fusion head 'ale'," in r.stderr


def test_in_process_a_shared_kind_is_ambiguous_and_each_source_picks_its_own(pm):
    from clipclap_plugins.datasets_released import ReleasedFeatures

    class Mine(ReleasedFeatures):
        pass

    class Copycat:
        @hookimpl
        def register_dataset_kinds(self, register):
            register(Mine)

    pm.register(Copycat(), name="copycat")
    kinds = list_dataset_kinds(pm)
    with pytest.raises(AmbiguousNameError) as e:
        kinds.get("released-features")
    assert "'clipclap:released-features' or 'copycat:released-features'" in str(e.value)
    assert kinds.get("copycat:released-features") is Mine
    assert kinds.get("clipclap:released-features") is ReleasedFeatures
    assert kinds.get("synthetic") is not None and failures(pm) == []
    assert "copycat:released-features" in kinds.names() and "released-features" not in kinds.names()
    with pytest.raises(UnknownNameError):
        kinds.get("nobody:released-features")


def test_a_plugin_registering_one_name_twice_is_left_out(pm):
    from clipclap_plugins.clipclap_head import ClipClapHead

    class Twice:
        @hookimpl
        def register_heads(self, register):
            register(type("A", (ClipClapHead,), {"head_id": "twin"}))
            register(type("B", (ClipClapHead,), {"head_id": "twin"}))

    pm.register(Twice(), name="twice")
    assert "twin" not in list_heads(pm) and "clipclap" in list_heads(pm)
    [failure] = failures(pm)
    assert failure.reason == "its register_heads hook failed (it registers fusion head 'twin' twice)"
