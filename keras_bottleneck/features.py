"""Run images through the frozen backbone in batches and stream the features to disk."""
import queue
import threading
import weakref
from contextlib import closing
from pathlib import Path

import numpy as np

from .backbones import REGISTRY
from .checksums import sha256_of
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


# One compiled forward pass per model: tracing ResNet50 takes seconds, as long as extracting
# a hundred images on a small CPU, so it must happen once per process, not once per split.
_forward_of = weakref.WeakKeyDictionary()


def compiled_forward(model):
    """The backbone's inference pass as a TensorFlow graph, traced once for any batch size
    (the last, shorter batch and the next split reuse it instead of retracing)."""
    import tensorflow as tf
    if model not in _forward_of:
        model_ref = weakref.ref(model)  # the cached graph must not keep its model alive
        batch_spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32)
        # jit_compile (XLA) measured no faster on CPU here and compiles twice as long:
        # see benchmarks/extract.py.
        _forward_of[model] = tf.function(lambda images: model_ref()(images, training=False),
                                         input_signature=[batch_spec])
    return _forward_of[model]


def fingerprint(backbone, extract):
    """What an image's features depend on besides its pixels. Batch size counts: floating-point
    results may differ in the last bits between batch shapes (every batch is padded to it)."""
    import keras
    import tensorflow as tf
    weights = backbone["weights"]
    if weights not in ("imagenet", "none"):
        weights = "sha256:" + sha256_of(weights)
    return {"format": 1, "backbone": backbone["name"], "weights": weights,
            "alpha": backbone["alpha"] if REGISTRY[backbone["name"]].has_alpha else None,
            "dtype": extract["dtype"], "batch_size": extract["batch_size"],
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__}


def _padded(batch, batch_size):
    """`batch` with zero images appended up to `batch_size` rows."""
    if len(batch) == batch_size:
        return batch
    padded = np.zeros((batch_size,) + batch.shape[1:], batch.dtype)
    padded[:len(batch)] = batch
    return padded


def _computed_rows(model, preprocess, rows, indices, batch_size):
    """The features of rows `indices` of `rows` (NpyRows or alike), one row at a time, computed
    in full batches (the last one padded): every batch has the same shape, so a row's features
    do not depend on which rows share its batch, and reusing rows computed in another run is
    exact."""
    forward = compiled_forward(model)

    def to_input(chosen):
        images = _padded(np.asarray(rows.read(chosen)), batch_size)
        return len(chosen), np.asarray(preprocess(images), dtype=np.float32)
    batches = (indices[start:start + batch_size] for start in range(0, len(indices), batch_size))
    with closing(_prefetched(batches, to_input)) as ready:
        for count, batch in ready:
            yield from np.asarray(forward(batch))[:count]


def extract(model, preprocess, images, features_path, batch_size, dtype, progress=None,
            previous=None, keys=None):
    """Write model(preprocess(image)) for every image of `images` (a .npy path, or rows to read
    by index: NpyRows, augment.CachedViews) to `features_path`, holding only a few batches in
    memory whatever the number of images. With `previous` (an
    incremental.Previous) and the images' `keys`, rows it holds are copied instead of computed.
    Returns the features' shape and how many images went through the backbone."""
    rows = NpyRows(images) if isinstance(images, (str, Path)) else images
    shape = (len(rows),) + tuple(model.output_shape[1:])
    found = previous.find(keys) if previous is not None else [None] * len(rows)
    missing = [index for index, location in enumerate(found) if location is None]
    with closing(_computed_rows(model, preprocess, rows, missing, batch_size)) as computed:
        write_rows(features_path, shape, dtype, found, previous, computed, batch_size, progress)
    return shape, len(missing)
