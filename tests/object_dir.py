"""`objdir://`: an fsspec file system on a local folder that behaves like an object store for
clipclap's purposes, so that several processes can share one "bucket" (fsspec's memory:// is
one process's). Each object is written whole and appears at once, as an S3 or GCS upload does
(written beside, then moved in); clipclap's ObjectStore never renames anything itself.

Use from a test process: `register()`; from a subprocess: `python -c COMMAND_LINE` with this
folder on PYTHONPATH (see COMMAND_LINE).
"""

from __future__ import annotations

import os
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

#: runs the clipclap CLI with objdir:// registered (`python -c COMMAND_LINE ARGS...`)
COMMAND_LINE = "import object_dir; object_dir.register(); from clipclap_cli.cli import main; main()"


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
