"""datasets.toml: dataset *instances* as data. Formats (adapters) are code, found by `kind`.

Sources, later ones winning key by key: the project's datasets.toml, entries registered by
plugins (`register_dataset_entries`), then a user file (`--datasets PATH` or CLIPCLAP_DATASETS).
A name defined twice (the project's file and a plugin, or two plugins) is the user file's to
pick (`from = "SOURCE"`); until then using it is an error naming both.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipclap_cli.api import FeatureDims
from clipclap_cli.errors import AmbiguousNameError, ClipclapError, ConfigError, UnknownNameError
from clipclap_cli.frame_recipes import DEFAULT as DEFAULT_RECIPE
from clipclap_cli.frame_recipes import get_recipe
from clipclap_cli.metric_table import METRICS
from clipclap_cli.names import RULE as NAME_RULE
from clipclap_cli.names import is_valid_name
from clipclap_cli.params import build_params
from clipclap_cli.plugins.registry import DatasetCatalog
from clipclap_cli.protocol import SettingError, TrainSettings, checked_settings, merge_settings


def _resources() -> Path:
    """The data that ships inside the package (datasets.toml, the benchmarks' class splits and
    prompts), as a folder: installed packages are folders (a zipped install is refused, since
    the readers of these files take paths)."""
    folder = importlib.resources.files("clipclap_cli") / "resources"
    if not isinstance(folder, Path):
        raise ConfigError(f"clipclap's data files are inside an archive ({folder}); install clipclap "
                          "unzipped, or set CLIPCLAP_BENCHMARKS and pass --datasets")
    return folder


def project_datasets_toml() -> Path:
    """The built-in dataset entries (the repository's top-level datasets.toml links to this file)."""
    return _resources() / "datasets.toml"


def benchmarks_dir() -> Path:
    """Where the public class splits and prompt templates live: CLIPCLAP_BENCHMARKS, else the
    copy that ships in the package (stage_*.csv video lists gzipped: the readers take both)."""
    env = os.environ.get("CLIPCLAP_BENCHMARKS")
    return Path(env) if env else _resources() / "benchmarks"


@dataclass(frozen=True)
class DatasetEntry:
    """One [datasets.NAME] table, validated."""

    name: str
    display_name: str
    kind: str
    split: str
    dims: FeatureDims
    train: dict[str, Any]
    "The training settings the dataset sets (datasets.toml `train`), over the protocol's"
    prompts: str | None
    params: Any
    origin: str
    head_params: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    head_train: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    "Training settings of a head on this dataset (over the head's own defaults)"
    videos: str | None = None
    "Folder of the dataset's videos: `extract`'s default for --videos"
    frame_recipe: str = "clean"
    "How `extract` takes each video's frame (frame_recipes.py): the released features' recipe for a benchmark"
    published: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    "Published test results per head (percent: hm, zsl, and seen/unseen where known), for `report --published`"
    published_seeds: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    "Per head, the seeds its published results come from, where the paper says (one: a single run, not a mean)"

    @property
    def train_settings(self) -> TrainSettings:
        """The protocol's training settings with the dataset's over them."""
        return merge_settings([(f"dataset {self.name}", self.train)])[0]

    def resolve(self, value: str) -> Path:
        """Expand `{benchmarks}` and `~` in a path-valued setting."""
        return Path(value.replace("{benchmarks}", str(benchmarks_dir()))).expanduser()


_CORE_KEYS = {"display_name", "kind", "split", "dims", "train", "prompts", "head_params", "head_train", "videos",
              "published", "frame_recipe"}


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_toml_text(path: Path, what: str) -> dict[str, Any]:
    """A hand-edited TOML file (`what`: "datasets file", "prompts file") as a table; a missing,
    unreadable, non-UTF-8 or malformed file is one ConfigError naming it."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read this {what} ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {data[e.start]:#04x} on line {line}); "
                          f"save the {what} as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def _read_toml(path: Path) -> dict[str, dict]:
    data = read_toml_text(path, "datasets file")
    tables = data.get("datasets", {})
    if not isinstance(tables, dict) or set(data) - {"datasets", "slurm"}:  # [slurm]: train/slurm.py reads it
        raise ConfigError(f"{path}: expected only [datasets.NAME] tables (and a [slurm] table)")
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path} [datasets] {name} = {_shown(table)}: expected a table, "
                              f"[datasets.{name}] with kind = \"...\" and its settings")
    return tables


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: The largest feature width a datasets entry may give (`dims`).
MAX_DIM = 1_000_000


class _AmbiguousKind(Exception):
    def __init__(self, error: ClipclapError):
        self.error = error


def _build(name: str, table: dict, where: str, adapters) -> DatasetEntry:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{where} [datasets.{name}] {key}: {problem}")

    if not is_valid_name(name):
        raise ConfigError(f"{where} [datasets.{name!r}]: the dataset name is not allowed: use {NAME_RULE}")

    if "kind" not in table:
        raise fail("kind", "missing (the dataset format, see `clipclap datasets kinds`)")
    if not isinstance(table["kind"], str) or not table["kind"]:
        raise fail("kind", "expected a format name (a string, see `clipclap datasets kinds`), got "
                   + _shown(table["kind"]))
    for key in ("display_name", "split", "frame_recipe"):  # prompts and videos: below
        if key in table and not isinstance(table[key], str):
            raise fail(key, f"expected a string, got {_shown(table[key])}")
    try:
        adapter_cls = adapters.get(table["kind"])
    except UnknownNameError as e:
        raise ConfigError(f"{where} [datasets.{name}] kind={table['kind']!r}: {e}") from None
    except AmbiguousNameError as e:
        raise _AmbiguousKind(ConfigError(f"{where} [datasets.{name}] kind={table['kind']!r}: {e}")) from None
    extra = {k: v for k, v in table.items() if k not in _CORE_KEYS}
    try:
        params = build_params(adapter_cls.Params, extra, typed=True)
    except ClipclapError as e:
        raise ConfigError(f"{where} [datasets.{name}]: {e}") from None
    dims = table.get("dims", {})
    if not isinstance(dims, dict):
        raise fail("dims", f"expected a table, e.g. dims = {{ video = 512, audio = 1024 }}, got {_shown(dims)}")
    unknown = set(dims) - {"audio", "video", "clip", "clap"}
    if unknown:
        raise fail(f"dims.{sorted(unknown)[0]}", "unknown; valid: audio, video, clip, clap")
    for key, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIM:
            raise fail(f"dims.{key}", f"expected a positive integer up to {MAX_DIM}, got {_shown(value)}")
    def train_settings(key: str, train: Any) -> dict[str, Any]:
        """The given training settings, validated and typed."""
        try:
            return checked_settings(train)
        except SettingError as e:
            raise fail(f"{key}.{e.key}" if e.key else key, str(e)) from None

    if not is_valid_name(table.get("split", "cls_split")):
        raise fail("split", f"{table['split']!r} is not allowed as a split name: use {NAME_RULE}")
    for key in ("prompts", "videos"):
        if not isinstance(table.get(key, ""), str):
            raise fail(key, f"expected a path (a string), got {_shown(table[key])}")
    if "frame_recipe" in table:
        try:
            get_recipe(table["frame_recipe"])
        except UnknownNameError as e:
            raise fail("frame_recipe", str(e)) from None
    train_defaults = train_settings("train", table.get("train", {}))
    head_params, head_train = table.get("head_params", {}), table.get("head_train", {})
    for key, tables in (("head_params", head_params), ("head_train", head_train)):
        if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
            raise fail(key, f"expected one table per head, e.g. {key}.tcaf = {{ ... }}")
    for head, values in head_params.items():  # the head's Params check them when it is used (`train`)
        for key, value in values.items():
            problem = _value_problem(value)
            if problem:
                raise fail(f"head_params.{head}.{key}", f"{problem}, got {_shown(value)}")
    return DatasetEntry(
        published=_published(table.get("published", {}), fail),
        published_seeds=_published_seeds(table.get("published", {}), fail),
        head_params=head_params,
        head_train={head: train_settings(f"head_train.{head}", t) for head, t in head_train.items()},
        name=name,
        display_name=str(table.get("display_name", name)),
        kind=table["kind"],
        split=str(table.get("split", "cls_split")),
        dims=FeatureDims(
            audio=dims.get("audio", 1024),
            video=dims.get("video", 512),
            text_parts=(("clip", dims.get("clip", 512)), ("clap", dims.get("clap", 1024))),
        ),
        train=train_defaults,
        prompts=table.get("prompts"),
        videos=table.get("videos"),
        frame_recipe=table.get("frame_recipe", DEFAULT_RECIPE),
        params=params,
        origin=where,
    )


def build_entry(name: str, table: dict, where: str, adapters) -> DatasetEntry:
    """One `[datasets.NAME]` table (from `where`) checked and built against the dataset kinds
    `adapters`, as the catalog builds each entry (the contract kit builds its examples so)."""
    return _build(name, table, where, adapters)


def _value_problem(value: Any) -> str | None:
    """Whether `value` can be a parameter (`-p KEY=VALUE`'s, from TOML): a string, a whole or
    finite number, or true/false."""
    if isinstance(value, float) and not math.isfinite(value):
        return "expected a finite number"
    if not isinstance(value, str | int | float | bool):
        return "expected a string, a number or true/false"
    return None


def _published(tables: Any, fail) -> dict[str, dict[str, float]]:
    """`published.<head> = { hm = .., zsl = .., seen = .., unseen = .. }`, percentages, checked."""
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise fail("published", "expected one table per head, e.g. published.clipclap = { hm = 55.97, zsl = 46.96 }")
    for head, values in tables.items():
        for metric, value in values.items():
            if metric == "seeds":  # `_published_seeds`
                continue
            if metric not in METRICS:
                raise fail(f"published.{head}.{metric}", f"unknown; valid: {', '.join(METRICS)}, seeds")
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
                raise fail(f"published.{head}.{metric}", f"expected a percentage from 0 to 100, got {value!r}")
    return {head: {m: float(v) for m, v in values.items() if m != "seeds"} for head, values in tables.items()}


def _published_seeds(tables: dict, fail) -> dict[str, list[int]]:
    """`published.<head>.seeds = [42]`: the seeds the published results come from, where the
    paper says (one seed: a single run, which the report marks), checked."""
    out = {}
    for head, values in tables.items():
        if "seeds" in values:
            seeds = values["seeds"]
            if not isinstance(seeds, list) or not seeds or not all(
                    isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) != len(seeds):
                raise fail(f"published.{head}.seeds", f"expected a list of distinct whole numbers, got {seeds!r}")
            out[head] = list(seeds)
    return out


def load_catalog(pm, user_file: Path | None = None, project_file: Path | None = None) -> DatasetCatalog:
    """Read datasets.toml, plugin entries and the user's override file into a DatasetCatalog.

    A name defined by the project's file and a plugin, or by two plugins, keeps every definition:
    `datasets list` shows them all, and using the name is an error until the user's file picks
    one (`[datasets.NAME] from = "SOURCE"`, SOURCE a distribution or plugin name, `clipclap` for
    the project's file). An entry whose `kind` several plugins registered is refused the same way
    when it is used; every other entry works."""
    from clipclap_cli.plugins.manager import distribution, in_precedence, leave_out, trace
    from clipclap_cli.plugins.registry import check_entry, list_dataset_kinds

    adapters = list_dataset_kinds(pm)
    project_file = project_file or project_datasets_toml()
    raw: dict[str, list[_Definition]] = {}
    if project_file.exists():
        for name, table in _read_toml(project_file).items():
            raw[name] = [_Definition(table, str(project_file), "clipclap")]
    for impl in in_precedence(pm.hook.register_dataset_entries.get_hookimpls()):
        mine: dict[str, _Definition] = {}
        where = distribution(pm, impl.plugin_name)

        def register(name: str, table: dict, _plugin: str = impl.plugin_name, _mine: dict = mine,
                     _where: str | None = where) -> None:
            check_entry(name, table, _mine)  # as `settle` checks it
            origin = f"plugin {_plugin}" + (f" ({_where})" if _where else "")
            _mine[name] = _Definition(dict(table), origin, _where.split(" ")[0] if _where else _plugin, _plugin)

        try:
            impl.function(register=register)
        except (Exception, SystemExit) as e:  # a plugin's hook may raise anything: it is left out, the rest works
            leave_out(pm, impl.plugin_name, "register_dataset_entries", e)
            continue
        trace(pm, f"{impl.plugin_name} register_dataset_entries: dataset "
                  + (", ".join(map(repr, sorted(mine))) or "none"))
        for name, definition in mine.items():
            raw.setdefault(name, []).append(definition)
    user_file = user_file or (Path(os.environ["CLIPCLAP_DATASETS"]) if os.environ.get("CLIPCLAP_DATASETS") else None)
    if user_file is not None:
        for name, table in _read_toml(Path(user_file)).items():
            raw[name] = _over(raw.get(name, []), table, name, str(user_file))
    entries: dict[str, DatasetEntry] = {}
    refused: dict[str, tuple[ClipclapError, list[DatasetEntry]]] = {}
    for name, definitions in raw.items():
        built = [_build_or_refuse(name, d, adapters) for d in definitions]
        if len(definitions) > 1:
            refused[name] = (AmbiguousNameError(
                f"dataset {name!r} is defined by " + " and by ".join(d.origin for d in definitions)
                + "; pick one in your datasets file (--datasets FILE): "
                + " or ".join(f'[datasets.{name}] from = "{d.source}"' for d in definitions)),
                [b for b in built if isinstance(b, DatasetEntry)])
        elif isinstance(built[0], DatasetEntry):
            entries[name] = built[0]
        else:
            refused[name] = (built[0], [])
    return DatasetCatalog(entries, adapters, refused)


@dataclass(frozen=True)
class _Definition:
    """One [datasets.NAME] table and where it comes from."""

    table: dict
    origin: str
    "The file, or 'plugin P (dist V)'"
    source: str
    "What `from = ...` picks it by: `clipclap` for the project's file, else the distribution's or plugin's name"
    plugin: str | None = None


def _over(bases: list[_Definition], table: dict, name: str, where: str) -> list[_Definition]:
    """The user's table for `name` over the definition it picks (`from`), key by key. Over
    several definitions and no `from`, the name stays ambiguous: using it says to pick one."""
    from clipclap_cli.plugins.registry import canonical_source

    table = dict(table)
    pick = table.pop("from", None)
    if pick is not None and not isinstance(pick, str):
        raise ConfigError(f"{where} [datasets.{name}] from: expected the name of a definition (a string), "
                          f"got {_shown(pick)}")
    if pick is not None:
        chosen = [d for d in bases
                  if canonical_source(str(pick)) in {canonical_source(d.source), canonical_source(d.plugin or "")}]
        if len(chosen) != 1:
            raise ConfigError(f"{where} [datasets.{name}] from={pick!r}: "
                              + ("no such definition" if not chosen else "names several definitions")
                              + "; defined by " + (", ".join(f"{d.origin} (from = {d.source!r})" for d in bases)
                                                   or "nothing else"))
        bases = chosen
    if len(bases) > 1:
        return bases
    base = bases[0].table if bases else {}
    return [_Definition(_merge(base, table), where, bases[0].source if bases else "your file")]


def _build_or_refuse(name: str, definition: _Definition, adapters) -> DatasetEntry | ClipclapError:
    """The entry, or (for a `kind` several plugins registered) the error that using it raises;
    any other problem of the table is raised at once, as always."""
    try:
        return _build(name, definition.table, definition.origin, adapters)
    except _AmbiguousKind as e:
        return e.error
