"""Run images through the frozen backbone (an engine: see engines) in batches and stream the
features to disk."""
import queue
import threading
from collections import Counter
from contextlib import closing

import numpy as np

from .npy_stream import as_rows


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


def extract(engine, images, writer, keys, progress=None, nodes=None):
    """Add to `writer` (a storage.Writer) the `engine`'s features (see engines) of every image
    of `images` (rows to read by index: storage.Rows, NpyRows, augment.CachedViews,
    mirror.MirroredRows, or a .npy path) that it needs (no earlier extraction holds its key,
    of `keys`), holding only a few batches in memory whatever the number of images. Returns
    how many images went through the backbone; `nodes` (a Counter) gains how many each
    machine computed."""
    rows = as_rows(images)
    missing, seen = [], set()
    for index, key in enumerate(map(bytes, keys)):
        if writer.needs(key) and key not in seen:
            missing.append(index)
            seen.add(key)
    writer.check_room(len(missing))
    nodes = Counter() if nodes is None else nodes
    with closing(_computed_rows(engine, rows, missing, nodes)) as computed:
        for index, features in zip(missing, computed):
            writer.add(bytes(keys[index]), features)
            if progress is not None:
                progress.update(1)
    if progress is not None:
        progress.update(len(rows) - len(missing))
    return len(missing)
