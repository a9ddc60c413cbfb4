"""The registries: heads, encoders, dataset kinds (collected from the plugins' `register_*`
hooks, with attribution and did-you-mean for unknown names) and the dataset catalog. Each is
collected once per plugin manager, so once per command, and again only when the manager's
plugins change. Before the first, a plugin that cannot run all its registering hooks is left out
(`settle`), so that it is absent from every registry, in every command alike.

A name two plugins register is kept twice: both are listed, and using the bare name is an
`AmbiguousNameError` that says how to pick one, `SOURCE:NAME`, where SOURCE is the
distribution that installed the plugin (`clipclap` for the built-ins) or the plugin's name.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from clipclap_cli.errors import (
    AmbiguousNameError,
    ClipclapError,
    ConfigError,
    DuplicateNameError,
    UnknownNameError,
)
from clipclap_cli.names import check_name
from clipclap_cli.plugins.contracts import validate_adapter, validate_encoder, validate_head

if TYPE_CHECKING:  # pragma: no cover
    from clipclap_cli.data.datasets_toml import DatasetEntry

T = TypeVar("T")


def canonical_source(source: str) -> str:
    """Distribution names compare as pip compares them: case and runs of '-_.' do not count."""
    return re.sub(r"[-_.]+", "-", source).lower()


@dataclass(frozen=True)
class Registered(Generic[T]):
    """One registered object and the plugin that registered it."""

    name: str
    obj: T
    plugin: str
    aliases: tuple[str, ...] = ()
    distribution: str | None = None
    "'name version' of the distribution that installed the plugin ('clipclap V' for the built-ins)"

    @property
    def source(self) -> str:
        """What picks this registration in `SOURCE:NAME`: its distribution's name, else its plugin's."""
        return self.distribution.split(" ")[0] if self.distribution else self.plugin

    def picked_by(self, source: str) -> bool:
        return canonical_source(source) in {canonical_source(self.plugin), canonical_source(self.source)}

    def origin(self) -> str:
        """'plugin 'p' (dist 1.0)', or 'the built-ins (clipclap 0.2.0)'."""
        if self.source == "clipclap":
            return f"the built-ins ({self.distribution})"
        return f"plugin {self.plugin!r}" + (f" ({self.distribution})" if self.distribution else "")


def split_qualified(name: str) -> tuple[str | None, str]:
    """'SOURCE:NAME' -> (SOURCE, NAME); a bare name -> (None, NAME)."""
    source, sep, base = name.rpartition(":")
    return (source, base) if sep else (None, name)


class Registry(Generic[T]):
    """Name -> object lookup with aliases; unknown names suggest the closest match, names several
    plugins registered must be qualified (`SOURCE:NAME`)."""

    def __init__(self, kind: str, entries: dict[str, list[Registered[T]]], hint: str = ""):
        self.kind, self._entries, self.hint = kind, entries, hint

    def entry(self, name: str) -> Registered[T]:
        """The registration for `name` (primary name or alias, bare or `SOURCE:NAME`).

        Raises:
            UnknownNameError: with the closest name and the list of available ones.
            AmbiguousNameError: several plugins registered `name`; the message names them and
                the qualified names that pick one.
        """
        source, base = split_qualified(name)
        found = self._entries.get(base, [])
        if source is not None:
            found = [r for r in found if r.picked_by(source)]
        if not found:
            raise UnknownNameError(self.kind, name, self.names(), self.hint)
        if len(found) > 1:
            picks = " or ".join(repr(f"{p}:{base}") for p in self._picks(found))
            raise AmbiguousNameError(f"{self.kind} {name!r} is registered by "
                                     + " and by ".join(r.origin() for r in found) + f"; pick one: {picks}")
        return found[0]

    @staticmethod
    def _picks(found: list[Registered[T]]) -> list[str]:
        """The SOURCE that picks each of `found`: its distribution where that tells them apart."""
        sources = [canonical_source(r.source) for r in found]
        return [r.source if sources.count(canonical_source(r.source)) == 1 else r.plugin for r in found]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        """A name that picks each registration, sorted: the primary name, qualified
        (`SOURCE:NAME`) where several plugins registered it."""
        out = []
        for name, found in self._entries.items():
            mine = [r for r in found if r.name == name]
            if len(found) == 1 and mine:
                out.append(name)
            elif mine:
                out += [f"{p}:{name}" for r, p in zip(found, self._picks(found), strict=True) if r.name == name]
        return sorted(out)

    def knows(self, name: str) -> bool:
        """Whether `name` is registered at all (once, or by several plugins)."""
        source, base = split_qualified(name)
        return any(source is None or r.picked_by(source) for r in self._entries.get(base, []))

    def __contains__(self, name: str) -> bool:
        return self.knows(name)

    def __iter__(self) -> Iterator[Registered[T]]:
        """Every registration, by primary name (registrations sharing a name side by side)."""
        seen: dict[int, Registered[T]] = {}
        for name in sorted(self._entries):
            for r in self._entries[name]:
                if r.name == name:
                    seen.setdefault(id(r), r)
        return iter(seen.values())


_collected: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"Per plugin manager: hook names -> (the implementations it was collected from, the Registry)"
_settled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"Per plugin manager: plugin name -> the plugin object `settle` has called the hooks of"


def _registrar(kind: str, name_of: Callable[[T], str], validate: Callable[[T], None] | None,
               mine: dict[str, Registered[T]], plugin: str, where: str | None) -> Callable[..., None]:
    """The `register(obj, aliases=())` callback a plugin's hook is given: each registration
    checked (its contract, its aliases, the name rule, no name twice) and kept in `mine`."""

    def register(obj: T, aliases: Sequence[str] = ()) -> None:
        if validate is not None:
            validate(obj)
        if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
            raise ClipclapError(f"aliases must be a list of names, not {aliases!r}")
        entry = Registered(name_of(obj), obj, plugin, tuple(aliases), where)
        for key in (entry.name, *entry.aliases):  # names become folders (runs/<dataset>/<head>/)
            check_name(kind, key)
            if key in mine:
                raise DuplicateNameError(f"it registers {kind} {key!r} twice")
            mine[key] = entry

    return register


def check_entry(name: str, table: object, mine: dict) -> None:
    """What `register(name, table)` of `register_dataset_entries` is checked for (`mine`: the
    names this plugin's hook registered so far); the table itself is checked where it is built."""
    if name in mine:
        raise DuplicateNameError(f"it registers dataset {name!r} twice")
    if not isinstance(table, dict):
        raise ConfigError(f"dataset {name!r}: the table must be a dict, not {type(table).__name__}")


def collect(
    pm,
    hook_names: str | tuple[str, ...],
    kind: str,
    name_of: Callable[[T], str],
    validate: Callable[[T], None] | None = None,
    hint: str = "",
) -> Registry[T]:
    """Call every implementation of the hook(s) `hook_names` (a hook and its deprecated old name)
    with a `register(obj, aliases=())` callback; the Registry is kept for the manager and built
    again only when its implementations change. A plugin whose hook raises is left out whole,
    and so is, first (`settle`), one whose other registering hooks cannot run."""
    from clipclap_cli.plugins.manager import distribution, in_precedence, leave_out, trace

    settle(pm)
    hooks = (hook_names,) if isinstance(hook_names, str) else hook_names

    def implementations() -> list:
        return [(hook, impl) for hook in hooks for impl in getattr(pm.hook, hook).get_hookimpls()]

    impls = implementations()
    cache = _collected.setdefault(pm, {})
    key = tuple(id(impl) for _, impl in impls)
    if hooks in cache and cache[hooks][0] == key:
        return cache[hooks][1]

    entries: dict[str, list[Registered[T]]] = {}
    by_impl = {id(impl): hook for hook, impl in impls}
    for impl in in_precedence([impl for _, impl in impls]):
        hook_name = by_impl[id(impl)]
        mine: dict[str, Registered[T]] = {}
        register = _registrar(kind, name_of, validate, mine, impl.plugin_name, distribution(pm, impl.plugin_name))
        try:
            impl.function(register=register)
        except (Exception, SystemExit) as e:  # a plugin's hook may raise anything: it is left out, the rest works
            leave_out(pm, impl.plugin_name, hook_name, e)
            continue
        trace(pm, f"{impl.plugin_name} {hook_name}: {kind} "
                  + (", ".join(sorted({repr(r.name) for r in mine.values()})) or "none"))
        for name, entry in mine.items():
            entries.setdefault(name, []).append(entry)
    key = tuple(id(impl) for _, impl in implementations())
    registry = Registry(kind, entries, hint)
    cache[hooks] = (key, registry)
    return registry


def settle(pm) -> None:
    """Leave out, before any registry is collected, every plugin that implements several
    registering hooks and cannot run one of them: its dataset kinds, dataset entries, encoders
    and heads are then absent from every command alike, with the same one-line notice, whichever
    registry a command reads first (`datasets list` reads no heads, `train` does). Each plugin is
    settled once per manager. A plugin with one registering hook needs no settling (its failure
    empties only the registry that calls it), which spares the built-ins, one hook each: heads
    import torch, and `datasets list` does not pay for it."""
    from clipclap_cli.plugins.manager import leave_out

    settled = _settled.setdefault(pm, {})
    for name, plugin in pm.list_name_plugin():
        if plugin is None or settled.get(name) is plugin:
            continue
        settled[name] = plugin
        impls = [(caller.name, impl) for caller in pm.get_hookcallers(plugin) or [] if caller.name in _REGISTERING
                 for impl in caller.get_hookimpls() if impl.plugin is plugin]
        if len(impls) < 2:
            continue
        for hook_name, impl in impls:
            try:
                impl.function(register=_REGISTERING[hook_name](name))
            except (Exception, SystemExit) as e:  # whatever collect would meet later, met now
                leave_out(pm, name, hook_name, e)
                break


def _manager(pm):
    if pm is None:
        from clipclap_cli.plugins.manager import get_plugin_manager

        return get_plugin_manager()
    return pm


_KINDS = ("dataset kind", lambda c: c.kind, validate_adapter, "clipclap datasets kinds")
_ENCODERS = ("encoder", lambda e: e.encoder_id, validate_encoder, "clipclap encoders list")
_HEADS = ("fusion head", lambda c: c.head_id, validate_head, "clipclap heads list")


def _checking(kind: str, name_of, validate, _hint: str = ""):
    """A register callback for `settle`: the checks of `collect`, the registrations dropped."""
    return lambda plugin: _registrar(kind, name_of, validate, {}, plugin, None)


def _checking_entries(plugin: str):
    mine: dict = {}

    def register(name: str, table: dict) -> None:
        check_entry(name, table, mine)
        mine[name] = table

    return register


_REGISTERING = {
    "register_dataset_kinds": _checking(*_KINDS),
    "register_datasets": _checking(*_KINDS),
    "register_dataset_entries": _checking_entries,
    "register_encoders": _checking(*_ENCODERS),
    "register_heads": _checking(*_HEADS),
}
"Every registering hook -> a checking register callback for `settle`, given the plugin's name"


def list_dataset_kinds(pm=None) -> Registry:
    return collect(_manager(pm), ("register_dataset_kinds", "register_datasets"), *_KINDS)


def list_encoders(pm=None) -> Registry:
    return collect(_manager(pm), "register_encoders", *_ENCODERS)


def list_heads(pm=None) -> Registry:
    return collect(_manager(pm), "register_heads", *_HEADS)


def get_encoder(name: str, pm=None):
    return list_encoders(pm).get(name)


def get_head(name: str, pm=None):
    return list_heads(pm).get(name)


def create_head(name: str, dims, params=None, pm=None):
    """Instantiate fusion head `name` for `dims` with `params` (a dict or its Params)."""
    from clipclap_cli.params import build_params

    cls = get_head(name, pm)
    if params is None or isinstance(params, dict):
        params = build_params(cls.Params, params or {})
    if getattr(cls, "label_space", False):
        check_label_space(name, dims)
    return cls(dims, params)


def check_label_space(name: str, dims) -> None:
    """A `label_space` head compares video with the CLIP label embeddings and audio with the
    CLAP ones: their widths must agree (those of the parts the dataset has)."""
    from clipclap_cli.errors import ParamError

    widths = dict(dims.text_parts)
    wrong = [f"{modality} is {width} wide, {part} {widths[part]}"
             for modality, width, part in (("video", dims.video, "clip"), ("audio", dims.audio, "clap"))
             if part in widths and widths[part] != width]
    if wrong:
        raise ParamError(f"head {name!r} compares features with the label embeddings of the same encoder, but "
                         f"{'; '.join(wrong)} (features and label embeddings from different models?)")


class DatasetCatalog:
    """Every dataset entry known from datasets.toml, plugins and the user's file. `refused`
    holds the names that cannot be used as they are (defined twice, or of a kind several
    plugins registered): the error using one raises, and its definitions for listings."""

    def __init__(self, entries: dict[str, DatasetEntry], adapters, refused: dict | None = None):
        self._entries, self.adapters, self.refused = entries, adapters, refused or {}

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> DatasetEntry:
        if name in self.refused:
            raise self.refused[name][0]
        if name not in self._entries:
            raise UnknownNameError("dataset", name, self._entries, "clipclap datasets list")
        return self._entries[name]

    def adapter(self, name: str):
        entry = self.get(name)
        return self.adapters.get(entry.kind)(entry, entry.params)

    def __iter__(self):
        return iter(self._entries[n] for n in self.names())

    def listing(self) -> list[tuple[DatasetEntry, str | None]]:
        """Every definition, with the problem of those that cannot be used as they are."""
        rows = [(e, None) for e in self]
        for error, definitions in self.refused.values():
            rows += [(e, str(error)) for e in definitions]
        return sorted(rows, key=lambda r: r[0].name)
