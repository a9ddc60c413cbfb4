"""Files clipclap writes outside the store (run files, reports, predictions): each lands whole or
not at all, and JSON never holds a value another reader cannot parse.

* `write_text_atomic` writes beside the target and renames over it, so a kill or a full disk
  leaves the old file or the new one, never a fragment; a failure is a `WriteError` in one line
  naming the file, with the partial copy removed.
* `write_json` refuses NaN and infinity (`allow_nan=False`): Python's json writes them as bare
  `NaN`/`Infinity`, which is not JSON and which a plotted or averaged figure turns into a
  plausible wrong number. The culprit is named by its path in the data.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clipclap_cli.errors import WriteError


@contextlib.contextmanager
def replacing(path: Path, mode: int | None = None, after: str = "nothing was changed there") -> Iterator[Path]:
    """A temporary path beside `path` to write in the block; when the block ends it is renamed
    over `path` (whole or not at all). An OSError (a full disk, no permission) becomes a
    `WriteError` naming `path` and ending with `after` (what the user can do), and the temporary
    file is removed. `mode`: the new file's permission bits (else the process's default)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}; {after}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` to `path` whole or not at all (`replacing`), flushed to the disk first."""
    with replacing(path, mode) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def non_finite_path(data: Any, where: str = "") -> str | None:
    """The path (`a.b[2]`) of the first NaN or infinity in `data`, or None when there is none."""
    if isinstance(data, float):
        return None if math.isfinite(data) else (where or "(the value)")
    if isinstance(data, dict):
        for key, value in data.items():
            found = non_finite_path(value, f"{where}.{key}" if where else str(key))
            if found:
                return found
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            found = non_finite_path(value, f"{where}[{i}]")
            if found:
                return found
    return None


def json_text(data: Any, *, indent: int | None = 2, what: str = "JSON") -> str:
    """`data` as JSON with sorted keys (same content, same bytes); a NaN or infinity anywhere is
    a `WriteError` naming where it is, not a file no strict reader can parse."""
    culprit = non_finite_path(data)
    if culprit is not None:
        raise WriteError(f"refusing to write {what}: {culprit} is not a finite number")
    return json.dumps(data, indent=indent, sort_keys=True, allow_nan=False) + ("\n" if indent is not None else "")


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` atomically (`write_text_atomic`), finite numbers only."""
    write_text_atomic(path, json_text(data, what=str(path)))
