"""Test-time mirroring (predict.mirror): a prediction is the mean of the class probabilities for
the image and for its left-right mirror image. Models are trained and saved as they are; only
scoring (validation, test), evaluate and the exported classifier average.

For the head on bottleneck features, the mirror images' features are extracted once like the
others: the split `<split>_mirrored` of data/features for the validation and test splits. They
are never trained on (the train split's views hold mirrored crops when augment.flip is set).
"""
import hashlib

import numpy as np

from . import storage
from .errors import PipelineError

# The stored split of a split's mirrored images: <split><SUFFIX>.
SUFFIX = "_mirrored"
SPLITS = ("validation", "test")


def features(directory, split):
    """The stored features of `split`'s mirror images (storage.Rows); one PipelineError if
    extract did not write them."""
    if not storage.has_split(directory, split + SUFFIX):
        raise PipelineError(f"{directory} has no features of the {split} split's mirror "
                            "images: predict.mirror needs them; run `dvc repro` (extract writes "
                            "them)")
    return storage.read_split(directory, split + SUFFIX).rows


def keys(image_keys):
    """Keys of the mirror images (see incremental.row_keys): each the SHA-256 of the image's key
    and a tag, so that their features are reused like any other row's, never mixed up with the
    image's own."""
    return np.array([list(hashlib.sha256(bytes(key) + b"mirrored").digest())
                     for key in image_keys], np.uint8).reshape(-1, 32)


class MirroredRows:
    """The mirror images of `images` (rows read by index), read by index likewise."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def read(self, indices):
        return np.asarray(self.images.read(indices))[:, :, ::-1]


def on_images(model, name=None):
    """`model` (images in, probabilities out) averaged over each image and its mirror image: one
    Keras model sharing `model`'s weights, built from Keras ops only."""
    import keras
    inputs = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype, name="image")
    mirrored = keras.ops.flip(inputs, axis=2)
    outputs = keras.layers.Average()([model(inputs), model(mirrored)])
    return keras.Model(inputs, outputs, name=name or f"{model.name}_mirrored")


def on_features(head):
    """`head` averaged over a pair of inputs: an image's features and its mirror image's."""
    import keras
    shape = head.input_shape[1:]
    features = keras.Input(shape, name="features")
    mirrored = keras.Input(shape, name="mirrored_features")
    return keras.Model([features, mirrored], keras.layers.Average()([head(features),
                                                                      head(mirrored)]),
                       name=f"{head.name}_mirrored")
