"""Typed errors. Every message is written for the person at the terminal."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ClipclapError(Exception):
    """Base of every error clipclap reports as one line on stderr (exit 1)."""


class MissingExtraError(ClipclapError):
    """A command needs an optional dependency that is not installed (the message names the extra)."""


class ConfigError(ClipclapError):
    """datasets.toml (or a user override) is malformed or names something unknown."""


class StoreError(ClipclapError):
    """The feature store lacks what a command needs, or cannot be written."""


class ImportDataError(ClipclapError):
    """A released-feature tree cannot be imported (the message names the file)."""


class SplitError(ClipclapError):
    """A protocol split cannot be built or read."""


class WriteError(ClipclapError):
    """A file clipclap writes outside the store cannot be written whole (full disk, no permission)
    or would hold a value no reader can parse (NaN); nothing was changed."""


class RunError(ClipclapError):
    """A training run directory is missing, incomplete or inconsistent."""


class CheckpointError(ClipclapError):
    """A checkpoint cannot be loaded into a fusion head."""


class ParamError(ClipclapError):
    """A KEY=VALUE plugin parameter is malformed, unknown or of the wrong type."""


class DeviceError(ClipclapError):
    """A device name is not one, or names hardware this machine lacks."""


class NameRuleError(ClipclapError):
    """A dataset, split, feature, head or other name breaks the naming rule (`names.py`)."""


class DuplicateNameError(ClipclapError):
    """One plugin registered the same name twice (two plugins sharing a name: AmbiguousNameError on use)."""


class AmbiguousNameError(ClipclapError):
    """A name that several plugins registered was used without saying whose (`SOURCE:NAME`)."""


class UnknownNameError(ClipclapError):
    """A name is not registered; the message suggests the closest one."""

    def __init__(self, kind: str, name: str, available: Iterable[str], hint: str = ""):
        self.kind, self.name, self.available = kind, name, sorted(available)
        close = difflib.get_close_matches(name, self.available, n=1, cutoff=0.5)
        msg = f"unknown {kind} {name!r}."
        if close:
            msg += f" Did you mean {close[0]!r}?"
        msg += f" Available: {', '.join(self.available) or '(none)'}"
        if hint:
            msg += f" (see `{hint}`)"
        super().__init__(msg)
