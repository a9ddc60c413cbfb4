"""Where a feature store lives, and how a finished group is put in place there.

Two kinds of location, chosen from what the user passes as `--store`:

* `Folder`: a path on a local or shared (POSIX) file system, or a `file://` URL.
* `ObjectStore`: any other fsspec URL (`s3://`, `gs://`, `az://`, `memory://`, ...).

Both put a group (a dataset, a split, a label-embedding matrix) in place the same way: it is
written under a key of its own, `name~N`, where N is a counter the store assigns, and it counts
from the moment its parent group's version record (the `clipclap_versions` attribute: the
counter, the key that is current for each name, and the keys retired or being written) names
it. Readers read the record, never the folder names: a copy of a version the user made, a key
written by a host whose clock runs ahead, anything the store did not commit is never read as
current. Nothing is ever replaced in place, so a write killed at any point leaves the store
reading the old version or the new one. In a folder the new version is written in a hidden
staging folder that names its writer (`.staging~PID~HOST~name~N`) and renamed to its key once
complete; behind a URL, which cannot rename, it is written at its key directly. Writers commit
one at a time (the store's writer lock, see `feature_store.py`), so the record is never updated
by two at once.

Stores written before the record (clipclap 0.3 and earlier: keys `name~<time>-<random>`) are
read as they were written, by the newest complete version of that form, until a write gives
each group its record.

What a killed write leaves behind (a staging folder, a retired version, a version written but
not committed) is debris that `tidy` removes the next time the store is opened for writing.
Only what the store itself wrote is ever removed: keys its record lists as retired, staging
folders of a valid name, versions of the earlier form carrying the store's commit attributes,
always inside the store's root. A folder that holds other things and no store marker is
refused as a store (`claim`).

Both hand zarr something it opens (a `Path` or a zarr `FsspecStore`), so the store's reading
and writing code is the same for both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from clipclap_cli.errors import StoreError
from clipclap_cli.names import is_valid_name
from clipclap_cli.store.locks import may_live

#: Separates a group's name from its version (`demo~00017641860000000000-3fa2c1d0`).
VERSION_SEP = "~"

#: The root attribute that marks a folder or URL as a clipclap store (its value: the schema version).
STORE_MARKER = "clipclap_store"

#: A group's attribute that records which of its children the store committed (`VersionRecord`).
RECORD = "clipclap_versions"

#: The key of a version the counter numbers (`name~N`; behind a URL `name~N-<random>`, see `committing`).
COUNTER_VERSION = re.compile(r"([0-9]{1,19})(?:-[0-9a-f]{8})?")

#: The key of a version in the form of clipclap 0.3 and earlier (`name~<time ns>-<random>`).
LEGACY_VERSION = re.compile(r"[0-9]{20}-[0-9a-f]{8}")

#: A URL scheme (`s3://`, `gs://`, `file://`), also as `Path` leaves it (`s3:/bucket`); two letters at
#: least, so that a Windows drive (`C:/`) is not one.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")

#: Debris of clipclap versions that replaced a group by two renames (`.demo.staging-3fa2c1d0`).
LEGACY_DEBRIS = re.compile(r"^\.(?P<name>.+)\.(?P<what>staging|old)-[0-9a-f]{8}$")


#: What the root of a store being made by another process holds before its marker is readable.
_ROOT_BEING_MADE = re.compile(r"zarr\.json|zarr\.[0-9a-f]+\.partial")


def is_store_root(folder: Path) -> bool:
    """Whether `folder` is a clipclap store's root: its zarr.json carries the store marker."""
    try:
        attrs = Folder(Path(folder)).attrs("")
    except OSError:  # unreadable: not one we can tell is a store
        return False
    return attrs is not None and STORE_MARKER in attrs


def open_location(where: Path | str) -> Folder | ObjectStore:
    """The location `where` names: a folder for paths and `file://` URLs, else an object store."""
    text = str(where)
    url = _URL.match(text)
    if url is None:
        return Folder(Path(where).expanduser())
    if url.group(1).lower() == "file":
        return Folder(Path(re.sub(r"^file:/*", "/", text, flags=re.IGNORECASE)))
    if "://" not in text:  # "s3:/bucket": a Path folded the URL's "//"
        raise StoreError(f"{text!r} looks like a URL with one slash; write {url.group(1)}://…")
    return ObjectStore(text.rstrip("/"))


def new_version() -> str:
    """A version in clipclap 0.3's form (only the recovery of that version's debris makes one)."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _version_rank(version: str) -> tuple | None:
    """How a version key's part after `~` sorts among a name's versions when there is no record:
    a plain name first, then clipclap 0.3's `<time>-<random>`, then the counter's `N`; None
    for anything else (a user's `backup`: never a version)."""
    if version == "":
        return (0,)
    if LEGACY_VERSION.fullmatch(version):
        return (1, version)
    counter = COUNTER_VERSION.fullmatch(version)
    if counter:
        return (2, int(counter[1]), version)
    return None


def legacy_committed(children: Iterable[tuple[str, Any]], plain_needs_complete: bool = True) -> dict[str, Any]:
    """A group's current children when it has no version record: a group of clipclap 0.3 and
    earlier, or one whose metadata was written back by hand after damage. Of the versions of a
    name (of the forms `_version_rank` knows: no other folder counts), the newest complete one;
    a plain name when complete, or always with `plain_needs_complete=False` (arrays, which those
    versions only ever renamed into place)."""
    best: dict[str, tuple[tuple, Any]] = {}
    for key, node in children:
        name, sep, version = key.partition(VERSION_SEP)
        rank = _version_rank(version)
        if not is_valid_name(name) or (sep and not version) or rank is None:
            continue
        if (sep or plain_needs_complete) and not node.attrs.get("complete"):
            continue
        if name not in best or rank > best[name][0]:
            best[name] = (rank, node)
    return {name: node for name, (_, node) in best.items()}


def record_of(attrs: Any, where: str = "") -> dict[str, Any] | None:
    """A group's version record, `{"counter": N, "current": {name: key}, "retired": [key, ...]}`,
    or None when it has none (a group of clipclap 0.3). A record that is there but malformed
    (hand-edited) is a StoreError naming the group's metadata (`where`): guessing which version
    is current could read the wrong data."""
    if not isinstance(attrs, dict) and not hasattr(attrs, "get"):
        return None
    if RECORD not in attrs:
        return None
    record = attrs.get(RECORD)
    counter = record.get("counter") if isinstance(record, dict) else None
    current = record.get("current") if isinstance(record, dict) else None
    retired = record.get("retired", []) if isinstance(record, dict) else None
    if (not isinstance(counter, int) or isinstance(counter, bool) or counter < 0 or not isinstance(current, dict)
            or not isinstance(retired, list)
            or not all(isinstance(k, str) and isinstance(v, str) and k == v.partition(VERSION_SEP)[0]
                       for k, v in current.items())
            or not all(isinstance(k, str) for k in retired)):
        raise StoreError(f"{_join(where, 'zarr.json') if where else 'a group'}: its version record ({RECORD}) is "
                         "damaged (it says which version of each name is current); put back the file from a "
                         "backup, or write the store again (import, extract or generate into a new --store)")
    return {"counter": counter, "current": dict(current), "retired": list(retired)}


def new_record(names: Iterable[str] = ()) -> dict[str, Any]:
    """The record of a group written whole: each of `names` current under its plain key."""
    return {"counter": 0, "current": {n: n for n in names}, "retired": []}


def committed(children: Iterable[tuple[str, Any]], parent_attrs: Any = None,
              plain_needs_complete: bool = True, where: str = "") -> dict[str, Any]:
    """The zarr nodes that count, by name: those the parent's version record names current, or,
    for a parent without a record (a store of clipclap 0.3 or earlier), `legacy_committed`.
    `where` names the parent in messages."""
    record = record_of(dict(parent_attrs), where) if parent_attrs is not None else None
    if record is None:
        return legacy_committed(children, plain_needs_complete)
    by_key = dict(children)
    return {name: by_key[key] for name, key in record["current"].items() if key in by_key}


def _is_stamped(attrs: dict | None) -> bool:
    """Whether a node's attributes carry what the store writes last on everything it commits."""
    return isinstance(attrs, dict) and ("complete" in attrs or "write_id" in attrs)


class _Location:
    """What both kinds share: the store marker, versioned commits and tidying up after kills."""

    path: Path | None

    # each kind implements these five
    def zarr(self, key: str = ""): ...
    def children(self, key: str) -> list[str]: ...
    def read_text(self, key: str) -> str | None: ...
    def remove(self, key: str) -> None: ...
    def is_empty_or_missing(self) -> bool: ...

    def _named(self, key: str) -> str:
        """`key` as a message names it: the store, then the key."""
        return _join(str(self), key)

    def exists(self, key: str = "") -> bool:
        return self.read_text(_join(key, "zarr.json")) is not None

    def attrs(self, key: str) -> dict | None:
        """The attributes in the zarr.json at `key`; None when there is none or it is unreadable."""
        text = self.read_text(_join(key, "zarr.json"))
        try:
            attrs = json.loads(text).get("attributes", {}) if text is not None else None
        except (ValueError, AttributeError):
            return None
        return attrs if isinstance(attrs, dict) else None

    def claim(self, schema_version: int) -> bool:
        """Check that this location is a clipclap store, or make it one when it is new or empty;
        True when it was made now. Anything else (a folder of the user's, another zarr hierarchy)
        is refused: the store never writes into what it does not own."""
        root = self.attrs("")  # zarr.json is written whole (marker included) or not at all
        if root is not None and STORE_MARKER in root:
            return False
        if root is None and self.exists():
            raise StoreError(f"{self}: its root metadata (zarr.json) cannot be read; if it is a clipclap store, "
                             "`clipclap verify` says how to write it again")
        if root is not None:
            raise StoreError(f"{self} is a zarr hierarchy that clipclap did not write (its root has no "
                             f"{STORE_MARKER!r} marker); give --store a new folder for a clipclap store")
        if self.path is not None and self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self} is a file, not a store folder; give --store a new or empty folder")
        if not self.is_empty_or_missing():
            raise StoreError(f"{self} holds other files and is not a clipclap store; give --store a new or "
                             f"empty folder (for example {_join(str(self), 'clipclap.zarr')})")
        import zarr
        from zarr.errors import ContainsGroupError

        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
        try:  # the marker in the root's first metadata write: no moment shows a root without it
            zarr.create_group(self.zarr(), attributes={STORE_MARKER: schema_version})
        except ContainsGroupError:  # another process (a shard) made it meanwhile
            return self.claim(schema_version)
        return True

    # ------------------------------------------------------------ the version record
    def check_inside(self, key: str) -> None:
        """Refuse to write at `key` when it would lead outside the store (a link below the root)."""

    def record(self, parent: str, plain_needs_complete: bool = True) -> dict[str, Any]:
        """`parent`'s version record; for a group without one (written by clipclap 0.3 or
        earlier), the record its children make: `legacy_committed` current, the other stamped
        versions of that form retired, so the first write gives the group its record."""
        found = record_of(self.attrs(parent), self._named(parent))
        if found is not None:
            return found
        children = [(c, SimpleNamespace(attrs=self.attrs(_join(parent, c)) or {})) for c in self.children(parent)
                    if self.exists(_join(parent, c))]
        current = legacy_committed(children, plain_needs_complete)
        keys = {key.partition(VERSION_SEP)[0]: key for key, node in children
                if current.get(key.partition(VERSION_SEP)[0]) is node}
        versions = [key for key, node in children if VERSION_SEP in key and _is_stamped(node.attrs)
                    and _version_rank(key.partition(VERSION_SEP)[2]) is not None]
        retired = [key for key in versions if key not in keys.values()]
        counter = max([int(m[1]) for k in versions if (m := COUNTER_VERSION.fullmatch(k.partition(VERSION_SEP)[2]))],
                      default=0)
        return {"counter": counter, "current": keys, "retired": retired}

    def write_record(self, parent: str, record: dict[str, Any]) -> None:
        """Write `parent`'s version record (its zarr.json is replaced whole, never in part)."""
        import zarr

        self.check_inside(parent)
        zarr.open_group(self.zarr(parent), mode="r+").attrs.update({RECORD: record})

    @contextlib.contextmanager
    def committing(self, parent: str, name: str, plain_needs_complete: bool = True) -> Iterator[Any]:
        """Write a new version of `parent/name` in the block (what it yields: where to write;
        the `complete` attribute last); when the block ends, the record makes it current and
        the version it replaces goes. The caller holds the store's writer lock."""
        self.check_inside(parent)
        record = self.record(parent, plain_needs_complete)
        taken = set(self.children(parent))
        n = record["counter"] + 1
        while f"{name}{VERSION_SEP}{n}" in taken:  # a folder of that name the store did not commit
            n += 1
        # behind a URL there is no writer lock: two writers may take the same N, so each key is its own
        key = f"{name}{VERSION_SEP}{n}" + ("" if self.path is not None else f"-{uuid.uuid4().hex[:8]}")
        record["counter"] = n
        record["retired"].append(key)  # while it is written: a kill leaves it to `tidy`
        self.write_record(parent, record)
        # Behind a URL there is no writer lock: while this version was written, another writer may
        # have committed its own, or listed the one it is writing as retired. So there the record
        # is read again before it is changed, and only what this writer knows to be finished with
        # is removed: its own version if it failed, else the version it supersedes (complete, as
        # it was current). Another writer's version in the making is left to it (removed under
        # it, it would be committed as a version that is not there).
        shared = self.path is None
        try:
            with self._written_at(parent, key) as target:
                yield target
        except BaseException:
            with contextlib.suppress(Exception):
                if shared:
                    record = self.record(parent, plain_needs_complete)
                    if key not in record["retired"]:  # another writer's record dropped it: still ours to remove
                        record["retired"].append(key)
                self.drop_retired(parent, record, only={key} if shared else None)
            raise
        if shared:
            record = self.record(parent, plain_needs_complete)
        previous = record["current"].get(name)
        record["current"][name] = key
        if key in record["retired"]:
            record["retired"].remove(key)
        if previous is not None and previous != key:
            record["retired"].append(previous)
        self.write_record(parent, record)  # the commit
        self.drop_retired(parent, record, only={previous} if shared else None)

    def drop_retired(self, parent: str, record: dict[str, Any], only: set[str | None] | None = None) -> None:
        """Remove the versions `parent`'s record lists as retired (superseded, or left by a
        write that did not finish), then take them off the list; with `only`, just those of them."""
        dropped = [key for key in record["retired"] if only is None or key in only]
        for key in dropped:
            where = _join(parent, key)
            if key not in record["current"].values() and (self.exists(where) or self.children(where)):
                self.remove(where)
        if dropped:
            record["retired"] = [key for key in record["retired"] if key not in dropped]
            self.write_record(parent, record)

    @contextlib.contextmanager
    def _written_at(self, parent: str, key: str) -> Iterator[Any]:
        """Where to write the version `parent/key` (each kind says how it is put in place)."""
        raise NotImplementedError
        yield

    def _supersede_legacy(self, parent: str, name: str, version: str) -> None:
        """Remove what a group without a record holds of `parent/name` older than `version` (the
        newest complete one, in clipclap 0.3's form)."""
        for child in self.children(parent):
            other, sep, other_version = child.partition(VERSION_SEP)
            if other != name or other_version >= version or (sep and not LEGACY_VERSION.fullmatch(other_version)):
                continue
            key = _join(parent, child)
            attrs = self.attrs(key)
            is_node = self.read_text(_join(key, "zarr.json")) is not None  # readable or not
            # ours: anything under a dataset's splits/ or label_embeddings/ (the dataset is ours); in
            # the root, a zarr node with a version key, or a plain one carrying the commit stamp
            if (parent and (sep or is_node)) or (sep and is_node) or _is_stamped(attrs):
                self.remove(key)

    def tidy(self, parent: str) -> None:
        """Finish or roll back what killed writes left under `parent`, and remove their debris:
        retired versions (superseded or never committed), staging folders of dead writers, and
        for a group without a record (clipclap 0.3's form) the versions older than the newest
        complete one and the two-rename debris of earlier clipclap versions."""
        children = self.children(parent)
        self._recover_legacy(parent, children)
        children = self.children(parent)
        record = record_of(self.attrs(parent), self._named(parent))
        if record is not None:
            self.drop_retired(parent, record)
        else:
            newest: dict[str, str] = {}
            for child in children:
                name, sep, version = child.partition(VERSION_SEP)
                if (sep and is_valid_name(name) and LEGACY_VERSION.fullmatch(version)
                        and (self.attrs(_join(parent, child)) or {}).get("complete")):
                    newest[name] = max(newest.get(name, ""), version)
            for name, version in newest.items():
                self._supersede_legacy(parent, name, version)
        for child in children:
            if _dead_staging(child):
                self.remove(_join(parent, child))

    def _recover_legacy(self, parent: str, children: list[str]) -> None:
        """Earlier clipclap versions replaced `name` by renaming it to `.name.old-X`, then
        `.name.staging-X` to `name`. Killed between the two, the store read no `name` at all:
        bring back the new copy when it is complete, else the old one; drop the rest."""
        debris: dict[str, dict[str, list[str]]] = {}
        for child in children:
            m = LEGACY_DEBRIS.match(child)
            if m and is_valid_name(m["name"]):
                debris.setdefault(m["name"], {"staging": [], "old": []})[m["what"]].append(child)
        if not debris or self.path is None:
            return
        held = {c.partition(VERSION_SEP)[0] for c in children
                if is_valid_name(c.partition(VERSION_SEP)[0]) and _is_stamped(self.attrs(_join(parent, c)))}
        for name, found in debris.items():
            if name in held:
                continue
            for child in found["staging"] + found["old"]:  # the new copy first
                if (self.attrs(_join(parent, child)) or {}).get("complete"):
                    key = f"{name}{VERSION_SEP}{new_version()}"
                    os.rename(self.zarr(_join(parent, child)), self.zarr(_join(parent, key)))
                    record = record_of(self.attrs(parent))
                    if record is not None:  # a group with a record reads only what it names
                        record["current"][name] = key
                        self.write_record(parent, record)
                    break
        for child in self.children(parent):
            if LEGACY_DEBRIS.match(child) and is_valid_name(LEGACY_DEBRIS.match(child)["name"]):
                self.remove(_join(parent, child))


def _join(parent: str, child: str) -> str:
    return f"{parent}/{child}" if parent else child


def _writer() -> tuple[int, str]:
    """This process as a staging folder names it: its pid and host."""
    return os.getpid(), socket.gethostname()


def debris_name(what: str, final: str) -> str:
    """A hidden folder that names its writer: `.staging~PID~HOST~final` (a version being
    written) or `.trash~PID~HOST~final` (a node being removed), so `tidy` can tell the debris of
    a dead writer from the work of a live one (`~` is in no name or host name)."""
    pid, host = _writer()
    return f".{what}{VERSION_SEP}{pid}{VERSION_SEP}{host}{VERSION_SEP}{final}"


def staging_name(final: str) -> str:
    return debris_name("staging", final)


def _is_debris(child: str) -> bool:
    parts = child.split(VERSION_SEP, 3)
    return len(parts) == 4 and parts[0] in (".staging", ".trash") and parts[1].isdigit()


def _dead_staging(child: str) -> bool:
    """Whether `child` is a staging or trash folder whose writer, on this host, is gone."""
    if not _is_debris(child):
        return False
    _, pid, host, _ = child.split(VERSION_SEP, 3)
    return not may_live(host, pid, _writer()[1])  # another host's writer may live: its work stays


class Folder(_Location):
    """A store in a folder: each version staged, then renamed to its own key."""

    def __init__(self, path: Path):
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def recorded(self) -> str:
        """How a run records where its store is (absolute, so it still resolves from elsewhere)."""
        return str(self.path.resolve())

    def zarr(self, key: str = "") -> Path:
        return self.path / key if key else self.path

    def children(self, key: str) -> list[str]:
        try:
            return sorted(os.listdir(self.zarr(key)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read_text(self, key: str) -> str | None:
        try:
            return self.zarr(key).read_text()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, UnicodeDecodeError):
            return None

    def is_empty_or_missing(self) -> bool:
        """Whether the folder is missing or holds nothing but the root metadata another process is
        writing this moment (zarr writes `zarr.json` through a temporary `zarr.*.partial`)."""
        if not self.path.exists():
            return True
        if not self.path.is_dir():
            return False
        return all(_ROOT_BEING_MADE.fullmatch(p.name) for p in self.path.iterdir())

    def remove(self, key: str) -> None:
        """Remove `key`, which must lie inside the store's root (checked on the resolved path)
        and not be a link: nothing outside the store is ever removed through it. It is first
        renamed to a hidden name that marks it as the store's debris (`.trash~PID~HOST~name`),
        so a kill half-way through the removal leaves something `tidy` knows to remove."""
        target = self.zarr(key)
        root = self.path.resolve()
        where = target.parent.resolve() / target.name
        if not key or target.is_symlink() or root not in where.parents:
            raise StoreError(f"refusing to remove {target}: it is not inside the store {self.path}")
        if not target.is_dir():
            target.unlink(missing_ok=True)
            return
        if not _is_debris(target.name):
            trash = target.parent / debris_name("trash", target.name)
            os.rename(target, trash)
            target = trash
        shutil.rmtree(target)

    def check_inside(self, key: str) -> None:
        """Refuse a key whose folder, or a folder above it inside the store, is a link, or that
        resolves outside the store's root: a write through it would land elsewhere."""
        root = self.path.resolve()
        target = self.zarr(key)
        if target.exists() and root not in [target.resolve(), *target.resolve().parents]:
            raise StoreError(f"refusing to write {target}: it leads outside the store {self.path}")
        step = target
        while key and step != self.path and step != step.parent:
            if step.is_symlink():
                raise StoreError(f"refusing to write through {step}: it is a link inside the store {self.path} "
                                 "(a store's folders are its own; `clipclap verify` names what does not belong)")
            step = step.parent

    @contextlib.contextmanager
    def _written_at(self, parent: str, key: str) -> Iterator[Path]:
        """A fresh staging folder that becomes `parent/key` by one rename once written."""
        base = self.zarr(parent)
        base.mkdir(parents=True, exist_ok=True)
        staging = base / staging_name(key)
        try:
            yield staging
            os.rename(staging, base / key)  # a new name: nothing is replaced
        finally:
            if staging.exists():  # the write failed: its partial copy goes
                shutil.rmtree(staging, ignore_errors=True)


class ObjectStore(_Location):
    """A store behind an fsspec URL: versioned keys, committed by their `complete` attribute."""

    path = None

    def __init__(self, url: str):
        import fsspec

        self.url = url
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as e:  # an unknown scheme, or its fsspec package is missing
            raise StoreError(f"cannot open the store {url}: {e}") from None

    def __str__(self) -> str:
        return self.url

    def recorded(self) -> str:
        return self.url

    def _full(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def zarr(self, key: str = ""):
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(f"{self.url}/{key}" if key else self.url, read_only=False)

    def children(self, key: str) -> list[str]:
        try:
            listed = self.fs.ls(self._full(key), detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in listed} - {""})

    def read_text(self, key: str) -> str | None:
        try:
            return self.fs.cat_file(self._full(key)).decode()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, UnicodeDecodeError):
            return None

    def is_empty_or_missing(self) -> bool:
        return not self.children("")

    def remove(self, key: str) -> None:
        if not key or ".." in key.split("/"):
            raise StoreError(f"refusing to remove {self.url}/{key}: it is not inside the store")
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._full(key), recursive=True)

    @contextlib.contextmanager
    def _written_at(self, parent: str, key: str):
        """The key itself (a URL cannot rename): the record commits it, `tidy` removes it if not."""
        yield self.zarr(_join(parent, key))


StoreLocation = Folder | ObjectStore
"Where a store is (`open_location`): a folder, or an object store's URL"
