"""The registries: heads, encoders, dataset kinds (collected from the plugins' `register_*`
hooks, with attribution, duplicates refused and did-you-mean for unknown names) and the
dataset catalog. Each is collected once per plugin manager, so once per command, and again
only when the manager's plugins change."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from clipclap_cli.errors import ClipclapError, DuplicateNameError, UnknownNameError
from clipclap_cli.names import check_name
from clipclap_cli.protocol import SettingError, checked_settings

if TYPE_CHECKING:  # pragma: no cover
    from clipclap_cli.data.datasets_toml import DatasetEntry

T = TypeVar("T")


@dataclass(frozen=True)
class Registered(Generic[T]):
    """One registered object and the plugin that registered it."""

    name: str
    obj: T
    plugin: str
    aliases: tuple[str, ...] = ()


class Registry(Generic[T]):
    """Name -> object lookup with aliases; unknown names suggest the closest match."""

    def __init__(self, kind: str, entries: dict[str, Registered[T]], hint: str = ""):
        self.kind, self._entries, self.hint = kind, entries, hint

    def entry(self, name: str) -> Registered[T]:
        """The registration for `name` (primary name or alias).

        Raises:
            UnknownNameError: with the closest name and the list of available ones.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries, self.hint) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        """Primary names, sorted."""
        return sorted({e.name for e in self._entries.values()})

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registered[T]]:
        return iter(self.entry(n) for n in self.names())


_collected: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"Per plugin manager: hook name -> (the implementations it was collected from, the Registry)"


def collect(
    pm,
    hook_name: str,
    kind: str,
    name_of: Callable[[T], str],
    validate: Callable[[T], None] | None = None,
    hint: str = "",
) -> Registry[T]:
    """Call every implementation of `hook_name` with a `register(obj, aliases=())` callback; the
    Registry is kept for the manager and built again only when its implementations change."""
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    cache = _collected.setdefault(pm, {})
    key = tuple(id(impl) for impl in impls)
    if hook_name in cache and cache[hook_name][0] == key:
        return cache[hook_name][1]
    from clipclap_cli.plugins.manager import in_precedence, leave_out

    entries: dict[str, Registered[T]] = {}
    for impl in in_precedence(impls):
        mine: dict[str, Registered[T]] = {}

        def register(obj: T, aliases: Sequence[str] = (), _plugin: str = impl.plugin_name,
                     _mine: dict = mine) -> None:
            if validate is not None:
                validate(obj)
            if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
                raise ClipclapError(f"aliases must be a list of names, not {aliases!r}")
            entry = Registered(name_of(obj), obj, _plugin, tuple(aliases))
            for key in (entry.name, *entry.aliases):  # names become folders (runs/<dataset>/<head>/)
                check_name(kind, key)
                if key in entries or key in _mine:
                    other = (entries.get(key) or _mine[key]).plugin
                    raise DuplicateNameError(f"{kind} {key!r} is registered by {other} already")
                _mine[key] = entry

        try:
            impl.function(register=register)
        except Exception as e:  # a plugin's hook may raise anything: it is left out, the rest works
            leave_out(pm, impl.plugin_name, hook_name, e)
            continue
        entries.update(mine)
    key = tuple(id(impl) for impl in getattr(pm.hook, hook_name).get_hookimpls())
    registry = Registry(kind, entries, hint)
    cache[hook_name] = (key, registry)
    return registry


def _manager(pm):
    if pm is None:
        from clipclap_cli.plugins.manager import get_plugin_manager

        return get_plugin_manager()
    return pm


def _check_params(obj: Any, what: str) -> None:
    if not dataclasses.is_dataclass(getattr(obj, "Params", None)):
        raise ClipclapError(f"{what} must declare a `Params` dataclass")


def _validate_adapter(cls) -> None:
    if not isinstance(getattr(cls, "kind", None), str) or not cls.kind:
        raise ClipclapError(f"dataset adapter {cls!r} has no `kind`")
    _check_params(cls, f"dataset adapter {cls.kind!r}")


def _validate_encoder(enc) -> None:
    if not getattr(enc, "encoder_id", None):
        raise ClipclapError(f"encoder {enc!r} has no `encoder_id`")
    if getattr(enc, "modality", None) not in ("audio", "video", "text"):
        raise ClipclapError(f"encoder {enc.encoder_id!r}: modality must be audio, video or text")
    if not isinstance(getattr(enc, "dim", None), int) or enc.dim <= 0:
        raise ClipclapError(f"encoder {enc.encoder_id!r}: dim must be a positive integer")


def _validate_head(cls) -> None:
    if not getattr(cls, "head_id", None):
        raise ClipclapError(f"fusion head {cls!r} has no `head_id`")
    _check_params(cls, f"fusion head {cls.head_id!r}")
    try:
        checked_settings(getattr(cls, "train_defaults", {}))
    except SettingError as e:
        raise ClipclapError(f"fusion head {cls.head_id!r}: train_defaults"
                            + (f".{e.key}" if e.key else "") + f": {e}") from None


def list_dataset_kinds(pm=None) -> Registry:
    return collect(_manager(pm), "register_datasets", "dataset kind", lambda c: c.kind,
                   _validate_adapter, "clipclap datasets kinds")


def list_encoders(pm=None) -> Registry:
    return collect(_manager(pm), "register_encoders", "encoder", lambda e: e.encoder_id,
                   _validate_encoder, "clipclap encoders list")


def list_heads(pm=None) -> Registry:
    return collect(_manager(pm), "register_heads", "fusion head", lambda c: c.head_id,
                   _validate_head, "clipclap heads list")


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
    return cls(dims, params)


class DatasetCatalog:
    """Every dataset entry known from datasets.toml, plugins and the user's file."""

    def __init__(self, entries: dict[str, DatasetEntry], adapters):
        self._entries, self.adapters = entries, adapters

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> DatasetEntry:
        if name not in self._entries:
            raise UnknownNameError("dataset", name, self._entries, "clipclap datasets list")
        return self._entries[name]

    def adapter(self, name: str):
        entry = self.get(name)
        return self.adapters.get(entry.kind)(entry, entry.params)

    def __iter__(self):
        return iter(self._entries[n] for n in self.names())
