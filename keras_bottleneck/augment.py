"""Seeded random views of images: a random resized crop, horizontally flipped half the time.

A view is drawn from a seed sequence alone (numpy's SeedSequence takes a list of integers): for
the cached views of extract, the augment seed, the view's number and the image's key (the
SHA-256 of its pixels), so a view depends on nothing but the image and the seed, never on its
position in the dataset; for finetune's on-the-fly views, a number that tf.data draws afresh
every epoch.
"""
import dataclasses
import hashlib
import json

import numpy as np

# data/features/<VIEWS>_features.npy holds the cached views of the train images.
VIEWS = "train_views"


def crop_boxes(seed_sequences, augment):
    """One crop box per seed sequence, as TensorFlow's crop_and_resize takes them: (n, 4)
    float32 [y0, x0, y1, x1] in [0, 1], x0 and x1 swapped for a flipped view. The crop covers
    a uniform fraction of the image's area in [augment.crop_min_area, 1], with an aspect ratio
    whose log is uniform within [1/crop_max_aspect, crop_max_aspect], like Inception's (and
    torchvision's) RandomResizedCrop."""
    min_area, max_aspect = augment.crop_min_area, augment.crop_max_aspect
    boxes = np.empty((len(seed_sequences), 4), np.float32)
    for box, entropy in zip(boxes, seed_sequences):
        area, log_aspect, x, y, flip = np.random.default_rng(entropy).random(5)
        area = min_area + (1 - min_area) * area
        aspect = np.exp((2 * log_aspect - 1) * np.log(max_aspect))
        width, height = min(1.0, np.sqrt(area * aspect)), min(1.0, np.sqrt(area / aspect))
        x0, y0 = x * (1 - width), y * (1 - height)
        x1 = x0 + width
        if augment.flip and flip < 0.5:
            x0, x1 = x1, x0
        box[:] = (y0, x0, y0 + height, x1)
    return boxes


def views(images, boxes):
    """The crops `boxes` of `images` (a batch of HxWx3 images, one box each), resized back to
    HxW with bilinear interpolation, as float32."""
    import tensorflow as tf
    images = tf.convert_to_tensor(images)
    boxes = tf.convert_to_tensor(boxes)
    return tf.image.crop_and_resize(tf.cast(images, tf.float32), boxes,
                                    tf.range(tf.shape(images)[0]), tf.shape(images)[1:3])


def view_entropy(seed, key, view):
    """The seed sequence of view `view` (counted from 1) of the image whose key is `key`."""
    return [int(seed), int(view)] + np.frombuffer(bytes(key), np.uint32).tolist()


def cached_view_boxes(keys, copies, augment):
    """The boxes of the `copies` views of each image of `keys`, image after image:
    row i * copies + (v - 1) is view v of image i."""
    return crop_boxes([view_entropy(augment.seed, key, view)
                       for key in keys for view in range(1, copies + 1)], augment)


def view_keys(keys, copies, augment):
    """The key of each cached view (same order as cached_view_boxes): the SHA-256 of the image's
    key, the view's number and the augment settings, so that changing the settings recomputes
    the views, while raising augment_copies reuses the views already computed."""
    settings = json.dumps(dataclasses.asdict(augment), sort_keys=True).encode()
    out = np.zeros((len(keys) * copies, 32), np.uint8)
    for row, (key, view) in enumerate((key, view) for key in keys
                                      for view in range(1, copies + 1)):
        digest = hashlib.sha256(bytes(key) + view.to_bytes(4, "little") + settings).digest()
        out[row] = np.frombuffer(digest, np.uint8)
    return out


class CachedViews:
    """The `copies` augmented views of every image of `images` (rows read by index), as rows
    to read by index: row i * copies + (v - 1) is view v of image i."""

    def __init__(self, images, keys, copies, augment):
        self.images, self.copies = images, copies
        self.boxes = cached_view_boxes(keys, copies, augment)

    def __len__(self):
        return len(self.images) * self.copies

    def read(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return np.asarray(views(self.images.read(indices // self.copies), self.boxes[indices]))


class RandomView:
    """For train_head on cached views: each image in one of its 1 + `copies` forms, the
    original or one of its views, drawn anew every epoch. An epoch stays one pass over the
    images, so epochs, learning curves and the validation choice mean what they did without
    views, and every epoch shows the head images it has not seen in that form."""

    def __init__(self, originals, views, copies):
        from .npy_stream import as_rows
        self.originals, self.views = as_rows(originals), as_rows(views)
        self.copies = copies
        if len(self.views) != len(self.originals) * copies:
            raise ValueError(f"the views have {len(self.views)} rows, not {copies} views of "
                             f"each of the {len(self.originals)} images")
        self.outputs = [(self.originals.dtype, self.originals.shape[1:])]

    def read(self, indices, draws):
        chosen = (draws % np.uint64(self.copies + 1)).astype(np.int64)
        rows = np.empty((len(indices),) + tuple(self.originals.shape[1:]), self.originals.dtype)
        plain, viewed = chosen == 0, chosen > 0
        rows[plain] = self.originals.read(indices[plain])
        rows[viewed] = self.views.read(indices[viewed] * self.copies + chosen[viewed] - 1)
        return [rows]

    @staticmethod
    def combine(rows):
        return rows


class OnTheFly:
    """For finetune: each image as a fresh random view every epoch (see crop_boxes). The boxes
    are drawn in numpy, the crops made in the TensorFlow graph."""

    def __init__(self, images, augment):
        from .npy_stream import as_rows
        self.images, self.augment = as_rows(images), augment
        self.outputs = [(self.images.dtype, self.images.shape[1:]), (np.dtype(np.float32), (4,))]

    def read(self, indices, draws):
        seeds = [[self.augment.seed, int(draw)] for draw in draws]
        return [self.images.read(indices), crop_boxes(seeds, self.augment)]

    @staticmethod
    def combine(images, boxes):
        return views(images, boxes)
