"""Run images through the frozen backbone (an engine: see engines) in batches and stream the
features to disk."""
import queue
import threading
from collections import Counter
from contextlib import closing
from pathlib import Path

import numpy as np

from .incremental import write_rows
from .npy_stream import NpyRows


def _prefetched(batches, transform, depth=2):
    """Apply `transform` to `batches` in a background thread, `depth` batches ahead, so that
    reading and preprocessing overlap with the backbone's compute."""
    ready = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def produce():
        try:
            for batch in batches:
                if stop.is_set():
                    return
                ready.put(transform(batch))
            ready.put(done)
        except BaseException as error:  # re-raised in the consumer
            ready.put(error)

    threading.Thread(target=produce, daemon=True).start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # The consumer failed or stopped early: unblock the producer so that it ends and
        # closes the file instead of waiting forever on a full queue.
        stop.set()
        while not ready.empty():
            ready.get_nowait()


def padded(batch, batch_size):
    """`batch` with zero images appended up to `batch_size` rows."""
    if len(batch) == batch_size:
        return batch
    full = np.zeros((batch_size,) + batch.shape[1:], batch.dtype)
    full[:len(batch)] = batch
    return full


def _computed_rows(engine, rows, indices, nodes):
    """The features of rows `indices` of `rows` (NpyRows or alike), one row at a time, computed
    in full batches (the last one padded): every batch has the same shape, so a row's features
    do not depend on which rows share its batch, and reusing rows computed in another run is
    exact. Counts in `nodes` the rows each machine computed (the engine's `last_node`)."""
    batch_size = engine.batch_size

    def to_input(chosen):
        return padded(np.asarray(rows.read(chosen), dtype=np.float32), batch_size)
    starts = range(0, len(indices), batch_size)
    batches = (indices[start:start + batch_size] for start in starts)
    with closing(_prefetched(batches, to_input)) as ready, \
            closing(engine.outputs(ready)) as outputs:
        for start, output in zip(starts, outputs):
            real = min(batch_size, len(indices) - start)
            nodes[engine.last_node] += real
            yield from output[:real]


def extract(engine, images, features_path, dtype, progress=None, previous=None, keys=None,
            nodes=None):
    """Write the `engine`'s features (see engines) of every image of `images` (a .npy path, or
    rows to read by index: NpyRows, augment.CachedViews, mirror.MirroredRows) to
    `features_path`, holding only a few batches in memory whatever the number of images. With
    `previous` (an incremental.Previous) and the images' `keys`, rows it holds are copied
    instead of computed. Returns the features' shape and how many images went through the
    backbone; `nodes` (a Counter) gains how many each machine computed."""
    rows = NpyRows(images) if isinstance(images, (str, Path)) else images
    shape = (len(rows),) + tuple(engine.output_shape)
    found = previous.find(keys) if previous is not None else [None] * len(rows)
    missing = [index for index, location in enumerate(found) if location is None]
    nodes = Counter() if nodes is None else nodes
    with closing(_computed_rows(engine, rows, missing, nodes)) as computed:
        write_rows(features_path, shape, dtype, found, previous, computed, engine.batch_size,
                   progress)
    return shape, len(missing)
