"""Read .npy files (chunks of rows, labels, keys) row by row with plain reads, each checked.

Memory-mapping would be simpler, but every touched page of a mapping counts as resident memory,
so memory would grow with the dataset; plain reads keep it flat.
"""
import os

import numpy as np
from numpy.lib import format as npy_format

from .errors import damaged


def read_header(path):
    """(shape, dtype) of a .npy file, read without loading the data."""
    with open(path, "rb") as file:
        return _read_header(file)


def _read_header(file):
    """(shape, dtype), the file positioned at its data; a header that cannot be read or a size
    that is not the header's is a damaged file."""
    try:
        major, _ = npy_format.read_magic(file)
        read = (npy_format.read_array_header_1_0 if major == 1
                else npy_format.read_array_header_2_0)
        shape, fortran_order, dtype = read(file)
    except (ValueError, EOFError, SyntaxError) as error:
        raise damaged(file.name, f"not a readable .npy file: {error}") from None
    if fortran_order:
        raise ValueError(f"{file.name}: Fortran-ordered arrays are not supported")
    expected = file.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = os.fstat(file.fileno()).st_size
    if actual != expected:
        raise damaged(file.name, f"{actual} bytes where its header says {expected}: "
                      f"{'cut short' if actual < expected else 'longer than its array'}")
    return shape, dtype


def _short_read(path, got, wanted):
    return damaged(path, f"read {got} bytes where {wanted} were expected: it changed while "
                   "being read")


def load(path):
    """The whole array of a small .npy file (labels, keys, spans), its size checked first."""
    read_header(path)
    return np.load(path)


def as_rows(source):
    """Rows to read by index: `source` itself (storage.Rows, NpyRows or alike), or the rows of
    the .npy file at path `source`."""
    return NpyRows(source) if isinstance(source, (str, os.PathLike)) else source


class NpyRows:
    """Rows of a .npy file, read by index with plain reads: a shuffled batch costs one read a
    row, and nothing stays resident after it."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as file:
            self.shape, self.dtype = _read_header(file)
            self._data_offset = file.tell()
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __len__(self):
        return self.shape[0]

    @property
    def nbytes(self):
        return self.shape[0] * self._row_bytes

    def read(self, indices):
        """The rows `indices` (in that order) as one array."""
        indices = np.asarray(indices, dtype=np.int64)
        rows = np.empty((len(indices),) + tuple(self.shape[1:]), self.dtype)
        if len(indices) and ((indices < 0) | (indices >= self.shape[0])).any():
            raise IndexError(f"row index out of range for {self.path} of {self.shape[0]} rows")
        with open(self.path, "rb", buffering=0) as file:
            if len(indices) and (np.diff(indices) == 1).all():  # consecutive: one read
                self._read_into(file, int(indices[0]), rows.reshape(-1))
            else:  # in file order, which the disk and the page cache prefer
                for position in np.argsort(indices, kind="stable"):
                    self._read_into(file, int(indices[position]), rows[position].reshape(-1))
        return rows

    def _read_into(self, file, row, target):
        file.seek(self._data_offset + row * self._row_bytes)
        view = memoryview(target.view(np.uint8))
        got = 0
        while got < len(view):  # a raw read may return fewer bytes than asked, 0 at the end
            count = file.readinto(view[got:])
            if not count:
                raise _short_read(self.path, got, len(view))
            got += count
