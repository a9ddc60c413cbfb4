"""How the store's arrays are written so that damage shows, and the checks that find it.

Every array the store writes carries a CRC-32C checksum per chunk (zarr's `Crc32cCodec`), writes
every chunk (none is left to the fill value), and has a fill value no real value takes: NaN for
features and label embeddings, -1 for labels and split indices, 127 for partitions, '' for ids.
So a truncated or altered chunk fails its checksum, and a deleted chunk reads as values that the
checks below refuse, instead of as zeros that would train. All checks are vectorised.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clipclap_cli.api import PARTITIONS

#: The fill value of each kind of array: a value the data never holds.
FILL = {"ids": "", "labels": -1, "partition": 127, "features": np.nan, "label_embeddings": np.nan, "split": -1}


def array_options(kind: str) -> dict[str, Any]:
    """The `create_array` options of an array of `kind` (a key of FILL)."""
    from zarr.codecs import Crc32cCodec

    return {"compressors": [Crc32cCodec()], "fill_value": FILL[kind], "config": {"write_empty_chunks": True}}


def is_checksummed(array) -> bool:
    """Whether a zarr array's chunks carry checksums (arrays written before clipclap did not)."""
    return any(type(c).__name__ == "Crc32cCodec" for c in array.metadata.codecs)


def missing_chunks(array) -> int:
    """Chunks of the array that are not in the store (checksummed arrays write every chunk)."""
    return int(array.nchunks) - int(array.nchunks_initialized)


def value_problem(kind: str, values: np.ndarray, videos: int, classes: int, ids: np.ndarray | None = None,
                  class_names: list[str] | None = None) -> str | None:
    """What is wrong with an array's values, or None: features and label embeddings must be
    finite, labels class ids, partitions partition codes, split indices video indices, ids
    non-empty. `videos` and `classes` are the dataset's counts (the rows of its arrays)."""
    if kind in ("features", "label_embeddings"):
        bad = ~np.isfinite(values).all(axis=1) if values.ndim == 2 else ~np.isfinite(values)
        if bad.any():
            rows = np.flatnonzero(bad)
            names = ids if kind == "features" else (np.asarray(class_names) if class_names else None)
            first = ", ".join(map(str, (names[rows[:3]] if names is not None else rows[:3])))
            what = "videos" if kind == "features" else "classes"
            more = ", …" if len(rows) > 3 else ""
            return f"{len(rows)} of {len(values)} rows hold non-finite values ({what}: {first}{more})"
        expected = videos if kind == "features" else classes
        if len(values) != expected:
            return f"{len(values)} rows, the dataset has {expected} {'videos' if kind == 'features' else 'classes'}"
        return None
    if kind == "ids":
        if len(values) != videos:
            return f"{len(values)} ids, the dataset has {videos} videos"
        empty = int((values == "").sum())
        return f"{empty} empty video ids (a missing chunk)" if empty else None
    bounds = {"labels": (0, classes - 1), "partition": (-1, len(PARTITIONS) - 1), "split": (0, videos - 1)}[kind]
    if kind != "split" and len(values) != videos:
        return f"{len(values)} rows, the dataset has {videos} videos"
    outside = (values < bounds[0]) | (values > bounds[1])
    if outside.any():
        return (f"{int(outside.sum())} values outside {bounds[0]}..{bounds[1]} (first: {values[outside][0]}; "
                "a missing chunk reads as the fill value)")
    return None


def content_digest(values: np.ndarray) -> str:
    """A digest of an array's content (shape, dtype and values; strings by their text), recorded
    when it is committed: a chunk replaced by one that passes its own checksum (copied from
    another store) changes it, which per-chunk checksums cannot see. `verify` compares it."""
    import hashlib

    values = np.asarray(values)
    h = hashlib.sha256(f"{values.shape}".encode())
    if values.dtype.kind in "OUT" or values.dtype.kind not in "biuf":
        h.update(b"str")
        for text in values.ravel().tolist():
            h.update(str(text).encode("utf-8", errors="surrogatepass") + b"\x00")
    else:
        h.update(values.dtype.str.encode())
        h.update(np.ascontiguousarray(values).tobytes())
    return f"sha256:{h.hexdigest()}"
