"""What a store holds that it does not read, and removing what of it is the store's own.

The store reads only what its version records name (`locations.py`); everything else in its
folders is one of:

* debris of a killed write: a version its record lists as retired, a staging or trash folder of
  a writer that is gone, a version of clipclap 0.3's form older than the current one. The store's
  own, so `clean` removes it (the next writer does too, for this host's writers).
* staging of another host: a writer on another machine sharing the folder. Its process cannot be
  seen from here; while the store's writer lock is held (`clean` holds it) no writer is at work,
  so it is debris then, and `clean` removes it. `verify` gives its age.
* in progress: an extraction's working group (`.extract-NAME`), resumed by `clipclap extract`.
* foreign: anything else (a user's backup copy, `Thumbs.db`, a folder copied in). Never read,
  never removed: `verify` names it, and the user moves it out.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clipclap_cli.names import is_valid_name
from clipclap_cli.store.locations import LEGACY_DEBRIS, LEGACY_VERSION, VERSION_SEP, record_of
from clipclap_cli.store.locks import may_live

if TYPE_CHECKING:
    from clipclap_cli.store.feature_store import FeatureStore

#: Files the store itself keeps beside its nodes.
_OWN_FILES = {"zarr.json", ".clipclap-writer.lock"}

#: What each part of a dataset group holds besides its versioned children.
_DATASET_PARTS = ("videos", "features", "label_embeddings", "splits")


@dataclass(frozen=True)
class Stray:
    """Something in the store that it does not read. `kind`: 'debris', 'other host', 'in
    progress' or 'foreign'; `removable`: whether `clean` removes it."""

    key: str
    kind: str
    note: str
    removable: bool


def strays(store: FeatureStore) -> list[Stray]:
    """Everything in the store's root and its datasets' groups that the store does not read."""
    loc = store.location
    found = _children_strays(store, "", expected=set())
    for key in store.dataset_keys():
        found += _children_strays(store, key, expected={*_DATASET_PARTS}, versioned=False)
        for part in ("features", "label_embeddings", "splits"):
            if loc.exists(f"{key}/{part}"):
                found += _children_strays(store, f"{key}/{part}", expected=set())
        found += _children_strays(store, f"{key}/videos", expected={"ids", "labels", "partition"}, versioned=False)
    return found


def _children_strays(store: FeatureStore, parent: str, expected: set[str], versioned: bool = True) -> list[Stray]:
    """The children of `parent` the store does not read: with `versioned`, those its version
    record (or clipclap 0.3's rule) does not name; otherwise those not in `expected`."""
    loc = store.location
    children = loc.children(parent)
    if versioned:
        record = loc.record(parent, plain_needs_complete=not parent.endswith(("features", "label_embeddings")))
        current, retired = set(record["current"].values()), set(record["retired"])
    else:
        current, retired = expected, set()
    out = []
    for child in children:
        key = f"{parent}/{child}" if parent else child
        if child in _OWN_FILES or child in current:
            continue
        out.append(_classify(store, key, child, retired))
    return out


def _classify(store: FeatureStore, key: str, child: str, retired: set[str]) -> Stray:
    age = _age(store, key)
    if child in retired:
        return Stray(key, "debris", f"left by a write that was replaced or killed{age}", True)
    parts = child.split(VERSION_SEP, 3)
    if len(parts) == 4 and parts[0] in (".staging", ".trash") and parts[1].isdigit():
        _, pid, host, _ = parts
        if host != socket.gethostname():
            return Stray(key, "other host", f"staging of a writer on host {host} (pid {pid}){age}", True)
        if may_live(host, pid):
            return Stray(key, "in progress", f"being written by process {pid} on this host{age}", False)
        return Stray(key, "debris", f"left by process {pid}, which is gone{age}", True)
    if LEGACY_DEBRIS.match(child) or (
            VERSION_SEP in child and LEGACY_VERSION.fullmatch(child.partition(VERSION_SEP)[2])
            and is_valid_name(child.partition(VERSION_SEP)[0]) and _stamped(store, key)):
        return Stray(key, "debris", f"an older version (clipclap 0.3's form){age}", True)
    if re.fullmatch(r"\.extract-.+", child) and VERSION_SEP not in key:
        return Stray(key, "in progress", f"an extraction's working group: `clipclap extract` resumes it{age}", False)
    return Stray(key, "foreign", f"not written by clipclap (never read; move it out of the store){age}", False)


def _stamped(store: FeatureStore, key: str) -> bool:
    attrs = store.location.attrs(key) or {}
    return "complete" in attrs or "write_id" in attrs


def _age(store: FeatureStore, key: str) -> str:
    """', 3 h old' from the file's modification time (folders only), or ''."""
    if store.path is None:
        return ""
    try:
        seconds = time.time() - os.stat(store.path / key).st_mtime
    except OSError:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f", {seconds / size:.0f} {unit} old"
    return f", {seconds:.0f} s old"


def clean(store: FeatureStore) -> list[Stray]:
    """Remove what the store wrote and nobody holds (debris, other hosts' staging), under the
    store's writer lock so that no writer is at work; returns what was removed. Foreign files and
    work in progress stay."""
    removed = []
    with store.writer():
        for stray in strays(store):
            if stray.removable:
                store.location.remove(stray.key)
                removed.append(stray)
        for parent in {s.key.rpartition("/")[0] for s in removed}:
            record = record_of(store.location.attrs(parent), parent)
            if record is not None and record["retired"]:
                store.location.drop_retired(parent, record)
    return removed
