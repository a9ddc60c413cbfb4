"""`objdir://`: an fsspec file system on a local folder that behaves like an object store for
clipclap's purposes, so that several processes can share one "bucket" (fsspec's memory:// is
one process's). Each object is written whole and appears at once, as an S3 or GCS upload does
(written beside, then moved in); clipclap's ObjectStore never renames anything itself.

Use from a test process: `register()`; in a clipclap command of its own: `prestarted.clipclap(ARGS,
prelude=PRELUDE)`, with this folder on PYTHONPATH (as `python -c "PRELUDE; <clipclap's main>" ARGS`).
"""

from __future__ import annotations

import os
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

#: what a clipclap command runs before its main to know objdir:// (see the module's docstring)
PRELUDE = "import object_dir; object_dir.register()"


class ObjectDirFileSystem(LocalFileSystem):
    protocol = ("objdir",)

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        path = self._strip_protocol(path)
        folder, name = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        part = os.path.join(folder, f".{name}.upload-{uuid.uuid4().hex[:8]}")  # "." names are skipped
        with open(part, "wb") as f:
            f.write(value)
        os.replace(part, path)


def register() -> None:
    fsspec.register_implementation("objdir", ObjectDirFileSystem, clobber=True)
