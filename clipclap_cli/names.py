"""The one rule for the names clipclap builds paths and keys from.

Dataset, split, feature, label-embedding, head, encoder and dataset-kind names become folder
names in the store and under runs/, so every one of them is checked where it enters (the
command line, a datasets file, a plugin's registration) and again wherever the store builds a
key from it. A name that passes cannot climb out of a folder (`..`, `/`), hide (`.x`), look like
an option (`-x`) or collide with the store's version separator (`~`).
"""

from __future__ import annotations

import re

from clipclap_cli.errors import NameRuleError

MAX_LENGTH = 100
RULE = f"letters, digits, '_', '-' and '.', not starting with '.' or '-', at most {MAX_LENGTH} characters"
_NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_LENGTH - 1}}}")


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_name(kind: str, name: object) -> str:
    """`name` when it follows the rule, else a NameRuleError naming the `kind` ('dataset',
    'split', ...), the name and the rule."""
    if not is_valid_name(name):
        raise NameRuleError(f"{kind} name {name!r} is not allowed: use {RULE}")
    return name  # type: ignore[return-value]


#: What a head parameter's value may hold to name a run folder (`margin=0.1`, `fusion=mean`).
_FOLDER_VALUE = re.compile(r"[A-Za-z0-9_.+-]{1,100}")


def check_folder_value(key: str, value: object) -> str:
    """The text of a parameter value that goes into a run folder's name (`clipclap,margin=0.1`);
    a value that could not name a folder safely is refused with the way around it (`--run`)."""
    text = str(value)
    if not _FOLDER_VALUE.fullmatch(text) or text.startswith("."):
        raise NameRuleError(f"parameter {key}={text!r} cannot name a run folder (allowed: letters, digits, "
                            "'_', '.', '+', '-'); pass --run DIR to name the folder yourself")
    return text


def folder_of(kind: str, name: str) -> str:
    """The folder of a registered name: the name itself, checked; a qualified one (`SOURCE:NAME`,
    picking one of several plugins' registrations) as `SOURCE.NAME`, both parts checked."""
    source, sep, base = name.rpartition(":")
    if not sep:
        return check_name(kind, name)
    return f"{check_name(kind + ' source', source)}.{check_name(kind, base)}"
