"""The registries: heads, encoders, dataset kinds (collected from the plugins' `register_*`
hooks, with attribution and did-you-mean for unknown names) and the dataset catalog. Each is
collected once per plugin manager, so once per command, and again only when the manager's
plugins change.

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

from clipclap_cli.errors import AmbiguousNameError, ClipclapError, DuplicateNameError, UnknownNameError
from clipclap_cli.names import check_name
from clipclap_cli.plugins.contracts import validate_adapter, validate_encoder, validate_head

if TYPE_CHECKING:  # pragma: no cover
    from clipclap_cli.data.datasets_toml import DatasetEntry

T = TypeVar("T")


def _canonical(source: str) -> str:
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
        return _canonical(source) in {_canonical(self.plugin), _canonical(self.source)}

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
        sources = [_canonical(r.source) for r in found]
        return [r.source if sources.count(_canonical(r.source)) == 1 else r.plugin for r in found]

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
    again only when its implementations change. A plugin whose hook raises is left out whole."""
    from clipclap_cli.plugins.manager import distribution, in_precedence, leave_out, trace

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
        where = distribution(pm, impl.plugin_name)

        def register(obj: T, aliases: Sequence[str] = (), _plugin: str = impl.plugin_name,
                     _mine: dict = mine, _where: str | None = where) -> None:
            if validate is not None:
                validate(obj)
            if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
                raise ClipclapError(f"aliases must be a list of names, not {aliases!r}")
            entry = Registered(name_of(obj), obj, _plugin, tuple(aliases), _where)
            for key in (entry.name, *entry.aliases):  # names become folders (runs/<dataset>/<head>/)
                check_name(kind, key)
                if key in _mine:
                    raise DuplicateNameError(f"it registers {kind} {key!r} twice")
                _mine[key] = entry

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

def _manager(pm):
    if pm is None:
        from clipclap_cli.plugins.manager import get_plugin_manager

        return get_plugin_manager()
    return pm


def list_dataset_kinds(pm=None) -> Registry:
    return collect(_manager(pm), ("register_dataset_kinds", "register_datasets"), "dataset kind",
                   lambda c: c.kind, validate_adapter, "clipclap datasets kinds")


def list_encoders(pm=None) -> Registry:
    return collect(_manager(pm), "register_encoders", "encoder", lambda e: e.encoder_id,
                   validate_encoder, "clipclap encoders list")


def list_heads(pm=None) -> Registry:
    return collect(_manager(pm), "register_heads", "fusion head", lambda c: c.head_id,
                   validate_head, "clipclap heads list")


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
