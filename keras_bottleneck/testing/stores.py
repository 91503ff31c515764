"""Run extraction the way the extract stage does, into a store in a folder, for the tests and
benchmarks that look at the features themselves."""
import numpy as np

from .. import incremental, storage
from ..features import extract
from ..npy_stream import as_rows


def listing(directory):
    """An output folder as incremental hands earlier versions over: {relative name: path}."""
    return {path.relative_to(directory).as_posix(): path
            for path in sorted(directory.rglob("*")) if path.is_file()}


def extracted(engine, images, directory, dtype, keys=None, earlier=(), progress=None):
    """(the features of every row of `images` (rows, or a .npy path), read back in order, how
    many went through the backbone), written by features.extract into a store in `directory`;
    rows of the stores in `earlier` (folders) are reused by key (default: the pixels')."""
    rows = as_rows(images)
    keys = incremental.row_keys(rows) if keys is None else keys
    writer = storage.Writer(directory, storage.ARRAY,
                            storage.Earlier([listing(folder) for folder in earlier]),
                            engine.output_shape, dtype)
    computed = extract(engine, rows, writer, keys, progress)
    writer.finish({"train": (keys, np.zeros(len(rows), np.int64), [""] * len(rows))})
    return storage.read_split(directory, "train").rows[:], computed
