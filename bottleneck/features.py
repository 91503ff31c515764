"""Run images through the frozen backbone in batches and stream the features to disk."""
import threading
import queue

import numpy as np

from .npy_stream import NpyWriter, iter_batches, read_header


def _prefetched(batches, transform, depth=2):
    """Apply `transform` to `batches` in a background thread, `depth` batches ahead, so that
    reading and preprocessing overlap with the backbone's compute."""
    ready = queue.Queue(maxsize=depth)
    done = object()

    def produce():
        try:
            for batch in batches:
                ready.put(transform(batch))
            ready.put(done)
        except BaseException as error:  # re-raised in the consumer
            ready.put(error)

    threading.Thread(target=produce, daemon=True).start()
    while (item := ready.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def compiled_forward(model):
    """The backbone's inference pass as a compiled TensorFlow function."""
    import tensorflow as tf
    return tf.function(lambda images: model(images, training=False), jit_compile=False,
                       reduce_retracing=True)


def extract(model, preprocess, images_path, features_path, batch_size, dtype, progress=None):
    """Write model(preprocess(images)) for every image of `images_path` to `features_path`."""
    count = read_header(images_path)[0][0]
    forward = compiled_forward(model)
    shape = (count,) + tuple(model.output_shape[1:])
    with NpyWriter(features_path, shape, dtype) as writer:
        for batch in _prefetched(iter_batches(images_path, batch_size), preprocess):
            writer.write(np.asarray(forward(batch)))
            if progress is not None:
                progress.update(len(batch))
    return shape
