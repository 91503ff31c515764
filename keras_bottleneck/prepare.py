"""Select the subset to work on, resize it, and draw a first look at it."""
import numpy as np
from PIL import Image, ImageDraw

from .datasets import read_span
from .errors import PipelineError
from .images import decode_resized
from .npy_stream import NpyWriter
from .parallel import ordered_map


def select(labels, count, stratify, shuffle, seed, what="train"):
    """Sorted indices of `count` images: the first ones (the original's way), a seeded random
    draw with `shuffle`, and with `stratify` the same number from each class (±1)."""
    if count > len(labels):
        raise PipelineError(f"prepare.{what}_count {count} is more than the {len(labels)} "
                            f"{what} images there are: lower it")
    order = (np.random.default_rng(seed).permutation(len(labels)) if shuffle
             else np.arange(len(labels)))
    if not stratify:
        return np.sort(order[:count])
    classes = np.unique(labels)
    quotas = np.full(len(classes), count // len(classes))
    quotas[: count % len(classes)] += 1
    chosen = []
    for label, quota in zip(classes, quotas):
        of_class = order[labels[order] == label]
        if quota > len(of_class):
            raise PipelineError(f"prepare.stratify needs {quota} {what} images of class #{label} "
                                f"but there are {len(of_class)}: lower prepare.{what}_count")
        chosen.append(of_class[:quota])
    return np.sort(np.concatenate(chosen))


def _decode_resized(path, offset, length, name, img_size):
    return decode_resized(read_span(path, offset, length), img_size, name)


def write_resized(raw, indices, img_size, path):
    """Decode and resize images `indices` of RawSplit `raw` on every core into an
    (N, img_size, img_size, 3) uint8 .npy, holding a few images at a time."""
    located = (raw.locate(index) + (img_size,) for index in indices)
    with NpyWriter(path, (len(indices), img_size, img_size, 3), np.uint8) as writer:
        for image in ordered_map(_decode_resized, located, chunk_size=16):
            writer.write(image[None])


def first_look(images, labels, classes, path, count=8, tile=128):
    """A strip of the first images with their class names (the original's first look)."""
    count = min(count, len(images))
    strip = Image.new("RGB", (tile * count, tile + 20), "white")
    draw = ImageDraw.Draw(strip)
    for i in range(count):
        picture = Image.fromarray(images[i]).resize((tile, tile), Image.NEAREST)
        strip.paste(picture, (i * tile, 20))
        draw.text((i * tile + 4, 4), classes[labels[i]], fill="black")
    strip.save(path)
