"""One generic collector for every `register_*` hook: attribution, duplicates, did-you-mean."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import DuplicateNameError, NameRuleError, UnknownNameError
from .names import check_name

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


def collect(
    pm,
    hook_name: str,
    kind: str,
    name_of: Callable[[T], str],
    validate: Callable[[T], None] | None = None,
    hint: str = "",
) -> Registry[T]:
    """Call every implementation of `hook_name` with a `register(obj, aliases=())` callback."""
    entries: dict[str, Registered[T]] = {}
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):

        def register(obj: T, aliases: Sequence[str] = (), _plugin: str = impl.plugin_name) -> None:
            if validate is not None:
                validate(obj)
            entry = Registered(name_of(obj), obj, _plugin, tuple(aliases))
            for key in (entry.name, *entry.aliases):  # names become folders (runs/<dataset>/<head>/)
                try:
                    check_name(kind, key)
                except NameRuleError as e:
                    raise NameRuleError(f"plugin {_plugin}: {e}") from None
            for key in (entry.name, *entry.aliases):
                if key in entries:
                    raise DuplicateNameError(
                        f"{kind} {key!r} registered by both {entries[key].plugin} and {_plugin}"
                    )
                entries[key] = entry

        impl.function(register=register)
    return Registry(kind, entries, hint)
