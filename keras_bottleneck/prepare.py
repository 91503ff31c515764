"""Select the subset to work on, resize it, and draw a first look at it."""
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .datasets import raw_fingerprint
from .storage import read_span
from .errors import PipelineError
from .images import DRAFT_MARGIN, decode_resized
from .parallel import ordered_map


def read_exclusions(path):
    """The image paths listed in the file `path` (prepare.exclude), one a line as in the audit's
    file column (train/cat/IMG_0001.jpg); blank lines and lines starting with # are skipped."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"prepare.exclude {path} does not exist: create it (one image path a "
                            "line, as in metrics/audit/label_issues.csv) or point prepare.exclude "
                            "at such a file")
    lines = (line.strip() for line in path.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def kept(names, excluded):
    """Indices of the images whose names (as fetch stored them) are not in `excluded`."""
    return np.array([i for i, name in enumerate(names) if name not in excluded], np.int64)


def warn_unknown_exclusions(excluded, names):
    unknown = sorted(excluded - set(names))
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        print(f"warning: prepare.exclude lists {len(unknown)} paths that are no image of the "
              f"dataset, ignored: {', '.join(unknown[:5])}{more}", file=sys.stderr)


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


def hold_out(labels, chosen, count, stratify, seed):
    """Split the chosen train indices into (train, validation): `count` of them drawn at random
    (seeded), the same number from each class (±1) with `stratify`; both sorted."""
    if count >= len(chosen):
        raise PipelineError(f"prepare.validation_count {count} leaves no train images out of "
                            f"prepare.train_count {len(chosen)}: lower it or raise train_count")
    held = chosen[select(labels[chosen], count, stratify, True, seed, "validation")]
    return np.setdiff1d(chosen, held), held


def fingerprint(img_size):
    """What a prepared image depends on besides its source image's bytes."""
    return {**raw_fingerprint(), "img_size": img_size, "draft_margin": DRAFT_MARGIN}


def _decode_resized(path, offset, length, name, img_size):
    return decode_resized(read_span(path, offset, length), img_size, name)


def write_resized(raw, indices, img_size, writer, progress=None, cluster=None):
    """Decode and resize images `indices` of RawSplit `raw` on every core (or on the workers of
    a cluster.Cluster, sent the images' bytes) into `writer` (a storage.Writer of
    img_size x img_size x 3 uint8 rows), holding a few images at a time: only those the writer
    needs (no earlier preparation at this size holds them). Returns how many were decoded."""
    needed, seen = [], set()
    for index in indices:
        key = raw.keys[index].tobytes()
        if writer.needs(key) and key not in seen:
            needed.append(index)
            seen.add(key)
    writer.check_room(len(needed))
    missing = (raw.locate(index) + (img_size,) for index in needed)
    if cluster is None:
        decoding = ordered_map(_decode_resized, missing)
    else:
        decoding = cluster.ordered_map(decode_resized, (
            (read_span(path, offset, length), size, name)
            for path, offset, length, name, size in missing))
    with closing(decoding) as decoded:
        for index, pixels in zip(needed, decoded):
            writer.add(raw.keys[index].tobytes(), pixels)
            if progress is not None:
                progress.update(1)
    if progress is not None:
        progress.update(len(indices) - len(needed))
    return len(needed)


def first_images_of_each_class(labels, per_class):
    """{label: indices of its first `per_class` images}, labels in order."""
    return {int(label): np.flatnonzero(labels == label)[:per_class] for label in np.unique(labels)}


def first_look(images_by_class, classes, path, tile=96, max_classes=20):
    """A grid: one row per class (its name, then its first images), so that every class and
    its labelling can be checked at a glance. `images_by_class` is {label: [HxWx3 uint8]}."""
    shown = list(images_by_class.items())[:max_classes]
    columns = max(len(images) for _, images in shown)
    label_width = 120
    sheet = Image.new("RGB", (label_width + tile * columns, tile * len(shown) + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (label, images) in enumerate(shown):
        draw.text((4, row * tile + tile // 2), classes[label][:18], fill="black")
        for column, image in enumerate(images):
            picture = Image.fromarray(image).resize((tile, tile), Image.NEAREST)
            sheet.paste(picture, (label_width + column * tile, row * tile))
    if len(images_by_class) > max_classes:
        draw.text((4, tile * len(shown) + 4),
                  f"... and {len(images_by_class) - max_classes} more classes", fill="black")
    sheet.save(path)
