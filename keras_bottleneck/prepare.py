"""Select the subset to work on, resize it, and draw a first look at it."""
import numpy as np
from PIL import Image, ImageDraw

from .errors import PipelineError
from .images import resize
from .npy_stream import NpyWriter


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


def write_resized(images, indices, img_size, path):
    """Resize the chosen images one by one into an (N, img_size, img_size, 3) uint8 .npy."""
    with NpyWriter(path, (len(indices), img_size, img_size, 3), np.uint8) as writer:
        for index in indices:
            writer.write(resize(images[index], img_size)[None])


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
