"""Stream .npy files batch by batch with plain reads and writes.

Memory-mapping would be simpler, but every touched page of a mapping counts as resident memory,
so memory would grow with the dataset; buffered reads and writes keep it flat.
"""
import numpy as np
from numpy.lib import format as npy_format


class NpyWriter:
    """Write an array of known shape to a .npy file one batch (along axis 0) at a time."""

    def __init__(self, path, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.rows = 0
        self._file = open(path, "wb")
        header = {"descr": npy_format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": self.shape}
        npy_format.write_array_header_2_0(self._file, header)

    def write(self, batch):
        batch = np.ascontiguousarray(batch, dtype=self.dtype)
        if batch.shape[1:] != self.shape[1:] or self.rows + len(batch) > self.shape[0]:
            raise ValueError(f"batch of shape {batch.shape} does not fit array {self.shape}")
        self._file.write(batch.tobytes())
        self.rows += len(batch)

    def close(self):
        self._file.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"wrote {self.rows} rows of {self.shape[0]}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self._file.close()


def read_header(path):
    """(shape, dtype) of a .npy file, read without loading the data."""
    with open(path, "rb") as file:
        return _read_header(file)


def _read_header(file):
    major, _ = npy_format.read_magic(file)
    read = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
    shape, fortran_order, dtype = read(file)
    if fortran_order:
        raise ValueError(f"{file.name}: Fortran-ordered arrays are not supported")
    return shape, dtype


def iter_batches(path, batch_size):
    """Yield consecutive batches of rows of a .npy file, each a fresh array."""
    with open(path, "rb") as file:
        shape, dtype = _read_header(file)
        row_items = int(np.prod(shape[1:], dtype=np.int64))
        for start in range(0, shape[0], batch_size):
            rows = min(batch_size, shape[0] - start)
            batch = np.fromfile(file, dtype=dtype, count=rows * row_items)
            yield batch.reshape((rows,) + tuple(shape[1:]))


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
                file.seek(self._data_offset + int(indices[0]) * self._row_bytes)
                file.readinto(memoryview(rows.reshape(-1).view(np.uint8)))
            else:  # in file order, which the disk and the page cache prefer
                for position in np.argsort(indices, kind="stable"):
                    file.seek(self._data_offset + int(indices[position]) * self._row_bytes)
                    file.readinto(memoryview(rows[position].reshape(-1).view(np.uint8)))
        return rows
