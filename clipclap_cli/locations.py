"""Where a feature store lives, and how a finished group is put in place there.

Two kinds of location, chosen from what the user passes as `--store`:

* `Folder`: a path on a local or shared (POSIX) file system, or a `file://` URL. A group is
  written in a staging folder beside its final place and renamed over it, so readers see the
  old group or the new one, never a mix, and a failed write leaves the old one as it was.
* `ObjectStore`: any other fsspec URL (`s3://`, `gs://`, `az://`, `memory://`, ...). Object
  stores cannot rename a folder, so a group `name` is written under its own versioned key
  `name~<time>-<random>` and counts from the moment its `complete` attribute is written (last,
  in one object). Readers take the newest complete version (`committed`); the writer then
  removes the older versions. A write that fails or is killed leaves an incomplete version,
  which readers ignore and the next write of that name removes.

Both hand zarr something it opens (a `Path` or a zarr `FsspecStore`), so the store's reading
and writing code is the same for both.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import StoreError

#: Separates a group's name from its version on object stores (`demo~0001764186…-3fa2c1d0`).
VERSION_SEP = "~"

#: A URL scheme (`s3://`, `gs://`, `file://`), also as `Path` leaves it (`s3:/bucket`); two letters at
#: least, so that a Windows drive (`C:/`) is not one.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")


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


def committed(children: Iterable[tuple[str, Any]], plain_needs_complete: bool = True) -> dict[str, Any]:
    """The zarr nodes that count, by name: of the versions of a name (`name~v`), the newest
    complete one; a plain name (folder stores) when complete, or always with
    `plain_needs_complete=False` (arrays, which a folder store only ever renames into place)."""
    best: dict[str, tuple[str, Any]] = {}
    for key, node in children:
        name, sep, version = key.partition(VERSION_SEP)
        if name.startswith(".") or ((sep or plain_needs_complete) and not node.attrs.get("complete")):
            continue
        if name not in best or version > best[name][0]:
            best[name] = (version, node)
    return {name: node for name, (_, node) in best.items()}


class Folder:
    """A store in a folder: atomic replacement by rename."""

    def __init__(self, path: Path):
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def recorded(self) -> str:
        """How a run records where its store is (absolute, so it still resolves from elsewhere)."""
        return str(self.path.resolve())

    def zarr(self, key: str = "") -> Path:
        return self.path / key if key else self.path

    def exists(self, key: str = "") -> bool:
        return (self.zarr(key) / "zarr.json").exists()

    @contextlib.contextmanager
    def staged(self, parent: str, name: str) -> Iterator[Path]:
        """A fresh folder beside `parent/name`; on success it replaces `parent/name` atomically."""
        final = self.zarr(f"{parent}/{name}" if parent else name)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".{final.name}.staging-{uuid.uuid4().hex[:8]}"
        try:
            yield staging
            trash = None
            if final.exists():
                trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(final, trash)
            os.replace(staging, final)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


class ObjectStore:
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

    def exists(self, key: str = "") -> bool:
        return self.fs.exists(self._full(f"{key}/zarr.json" if key else "zarr.json"))

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._full(key), recursive=True)

    @contextlib.contextmanager
    def staged(self, parent: str, name: str):
        """A new version `parent/name~v` to write into (its `complete` attribute last); on
        success the older versions of `name` are removed, on failure this one is."""
        version = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        key = f"{parent}/{name}{VERSION_SEP}{version}" if parent else f"{name}{VERSION_SEP}{version}"
        try:
            yield self.zarr(key)
        except BaseException:
            self.remove(key)
            raise
        for path in self.fs.ls(self._full(parent), detail=False):
            other = path.rstrip("/").rsplit("/", 1)[-1]
            other_name, _, other_version = other.partition(VERSION_SEP)
            if other_name == name and other_version < version:  # a plain `name` (written with its group) too
                self.remove(f"{parent}/{other}" if parent else other)
