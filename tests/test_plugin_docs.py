"""docs/plugins.md is a plugin author's whole guide, so its code is run: its Python blocks,
put together, are one plugin module that must pass the contract kit, register what the page
says and add its command; its TOML blocks are what they claim to be; every clipclap name it
gives is there, in the public face."""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from pathlib import Path

import pytest

from clipclap_cli.plugins.manager import make_plugin_manager
from clipclap_cli.testing import check_plugin
from test_docs import blocks

PAGE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _code(lang: str) -> list[str]:
    return ["\n".join(b.lines) for b in blocks(PAGE.read_text(), PAGE) if b.lang == lang]


@pytest.fixture
def my_module(tmp_path, monkeypatch):
    """The page's plugin, written as the module `my_module` (its test block aside)."""
    source = [block for block in _code("python") if "def test_" not in block]
    (tmp_path / "my_module.py").write_text("\n\n".join(source) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_module", None)
    yield importlib.import_module("my_module")
    sys.modules.pop("my_module", None)


def test_the_pages_plugin_passes_the_contract_kit(my_module):
    results = check_plugin(my_module, allow_skips=False)
    assert {(r.what, r.name, r.status) for r in results} == {
        ("dataset kind", "npz-features", "pass"), ("encoder", "mean-colour", "pass"),
        ("fusion head", "linear-example", "pass")}


def test_the_pages_test_block_runs_as_written(my_module):
    [test_block] = [block for block in _code("python") if "def test_" in block]
    namespace: dict = {}
    exec(compile(test_block, str(PAGE), "exec"), namespace)
    namespace["test_my_plugin_keeps_the_clipclap_contract"]()


def test_the_pages_plugin_registers_its_entry_alias_and_command(my_module, cli):
    from clipclap_cli.data.datasets_toml import load_catalog
    from clipclap_cli.plugins.registry import list_encoders

    pm = make_plugin_manager(entrypoints=False)
    pm.register(my_module, name="my_module")
    assert load_catalog(pm).get("my-npz").kind == "npz-features"
    assert list_encoders(pm).entry("rgb-mean").name == "mean-colour"
    r = cli("hello", manager=pm)
    assert r.exit_code == 0 and r.stdout.strip() == "hello from my plugin"


def test_the_pages_toml_blocks_say_what_they_claim(tmp_path, pm):
    from clipclap_cli.data.datasets_toml import load_catalog

    packaging, datasets_file = _code("toml")
    assert tomllib.loads(packaging)["project"]["entry-points"]["clipclap"] == {"myplugin": "my_module"}
    (tmp_path / "mine.toml").write_text(datasets_file)
    assert load_catalog(pm, tmp_path / "mine.toml").get("ucf").kind == "released-features"


def _resolve(dotted: str):
    """The object `dotted` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_clipclap_name_the_page_gives_is_there_in_the_public_face():
    """What the page tells plugin authors to use lives in `clipclap_cli.api` (or the contract
    kit, `clipclap_cli.testing`); the one other module it names is the deprecated shim."""
    import clipclap_cli.api as api

    dotted = set(re.findall(r"clipclap_cli(?:\.\w+)+", PAGE.read_text()))
    assert {d.split(".")[1] for d in dotted} <= {"api", "testing", "heads_base"}, dotted
    for name in sorted(dotted):
        assert _resolve(name) is not None, name
    listed = re.search(r"## The public API\n(.+?)\n## ", PAGE.read_text(), re.S).group(1)
    not_names = {"clipclap_cli", "__all__", "DeprecationWarning", "register_datasets"}
    assert set(re.findall(r"`(\w+)`", listed)) - not_names <= set(api.__all__)
