"""Reading pickles that come from outside (the released features) without executing code.

Only numpy arrays (and their dtypes and scalars), lists, dicts, tuples, str, bytes and numbers
are admitted; any other global in the stream is refused.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes pickled with protocol 2
    ("collections", "OrderedDict"),
} | {("builtins", name) for name in ("dict", "list", "tuple", "str", "bytes", "int", "float", "set", "frozenset",
                                     "bytearray")}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something other than plain data."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refuses to load {module}.{name} (only plain data is allowed)")


def loads_restricted(data: bytes) -> Any:
    return RestrictedUnpickler(io.BytesIO(data)).load()


def load_npy_restricted(data: bytes) -> Any:
    """Load an .npy file's content; object arrays (pickled dicts) go through the restricted unpickler."""
    fh = io.BytesIO(data)
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    if dtype.hasobject:
        obj = RestrictedUnpickler(fh).load()
        if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
            return obj.item()
        return obj
    count = int(np.prod(shape)) if shape else 1
    arr = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")
