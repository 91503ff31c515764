"""The raw dataset on disk: a few large files per split, whatever the image sizes.

Images of one split are stored back to back in one flat uint8 array with their (height, width)
in another, so a folder of mixed-size images needs no resizing before `preprocess` and DVC
hashes a handful of files instead of one per image.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import PipelineError

SPLITS = ("train", "test")


@dataclass
class Split:
    """The images of one split, in a fixed order, with integer labels into `classes`."""
    images: list
    labels: np.ndarray


def save_raw(splits, classes, directory):
    """Write {split: Split} and the class names to `directory`."""
    directory = Path(directory)
    for name, split in splits.items():
        shapes = np.array([image.shape[:2] for image in split.images], np.int64).reshape(-1, 2)
        pixels = (np.concatenate([image.reshape(-1) for image in split.images])
                  if split.images else np.zeros(0, np.uint8))
        np.save(directory / f"{name}_pixels.npy", pixels)
        np.save(directory / f"{name}_shapes.npy", shapes)
        np.save(directory / f"{name}_labels.npy", np.asarray(split.labels, dtype=np.int64))
    write_classes(classes, directory)


def load_raw_split(directory, name):
    """One split of a raw dataset, as a Split of HxWx3 views into one array."""
    directory = Path(directory)
    pixels = np.load(directory / f"{name}_pixels.npy")
    shapes = np.load(directory / f"{name}_shapes.npy")
    ends = np.cumsum(shapes[:, 0] * shapes[:, 1] * 3)
    starts = np.concatenate([[0], ends[:-1]])
    images = [pixels[start:end].reshape(h, w, 3)
              for start, end, (h, w) in zip(starts, ends, shapes)]
    return Split(images, np.load(directory / f"{name}_labels.npy"))


def write_classes(classes, directory):
    (Path(directory) / "classes.json").write_text(json.dumps(list(classes), indent=1) + "\n")


def read_classes(directory):
    path = Path(directory) / "classes.json"
    if not path.exists():
        raise PipelineError(f"{path} is missing: run the earlier stages first (dvc repro)")
    return json.loads(path.read_text())


def load_arrays(directory, kind):
    """{split: (inputs, labels)} from <split>_<kind>.npy and <split>_labels.npy."""
    directory = Path(directory)
    return {name: (np.load(directory / f"{name}_{kind}.npy"),
                   np.load(directory / f"{name}_labels.npy")) for name in SPLITS}
