"""Unpickle data files that may come from anywhere: only the types that data formats use, never code.

pickle.load calls whatever callable a file names; a crafted CIFAR-10 batch can name os.system. This unpickler
admits dicts, lists, tuples, strings, bytes, numbers and numpy arrays, and refuses every other global.
"""

from __future__ import annotations

import pickle
from typing import Any, BinaryIO

# (module, name) of every global that a pickled dict of numpy arrays and Python values needs (numpy 1 and 2).
ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how protocol 2 stores bytes
}


class UnsafePickle(pickle.UnpicklingError):
    """A pickle that names a global outside ALLOWED."""


class DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in ALLOWED:
            raise UnsafePickle(f"it names {module}.{name}, which a data file never needs")
        return super().find_class(module, name)


def load_data_pickle(f: BinaryIO, encoding: str = "ASCII") -> Any:
    """pickle.load for data files (whatever the file holds, as pickle.load gives it); raises UnsafePickle for a file
    that would run code."""
    return DataUnpickler(f, encoding=encoding).load()
