"""What the built-in encoders record about themselves (`Encoder.provenance`): the sha256 of a
weights file, and the versions of the libraries that computed the features."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    """The file's sha256 (computed once per file version in a process: a checkpoint is large)."""
    stat = os.stat(path)
    return _sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def package_versions(*names: str) -> dict[str, str]:
    """{distribution: version} of those installed ('' for one that is not)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = ""
    return out
