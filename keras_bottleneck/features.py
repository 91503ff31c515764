"""Run images through the frozen backbone in batches and stream the features to disk."""
import queue
import threading
import weakref
from contextlib import closing

import numpy as np

from .npy_stream import NpyWriter, iter_batches, read_header


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


def extract(model, preprocess, images_path, features_path, batch_size, dtype, progress=None):
    """Write model(preprocess(images)) for every image of `images_path` to `features_path`,
    holding only a few batches in memory whatever the number of images."""
    count = read_header(images_path)[0][0]
    forward = compiled_forward(model)
    shape = (count,) + tuple(model.output_shape[1:])

    def to_input(batch):
        return np.asarray(preprocess(batch), dtype=np.float32)

    with (NpyWriter(features_path, shape, dtype) as writer,
          closing(_prefetched(iter_batches(images_path, batch_size), to_input)) as batches):
        for batch in batches:
            writer.write(np.asarray(forward(batch)))
            if progress is not None:
                progress.update(len(batch))
    return shape
