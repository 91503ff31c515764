"""The `folder` source: train/<class>/* and test/<class>/* images in a directory or archive."""
import tarfile
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .datasets import SPLITS, Split
from .errors import PipelineError
from .images import is_image_file, load_rgb


@contextmanager
def opened_source(path):
    """Yield a directory for `path`: the directory itself, or an archive unpacked to a temp dir."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    if not path.exists():
        raise PipelineError(f"data.path {path} does not exist: point data.path at a directory "
                            "or archive holding train/<class>/ and test/<class>/ images")
    with tempfile.TemporaryDirectory(prefix="bottleneck-unpack-") as unpacked:
        try:
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    archive.extractall(unpacked)
            else:
                with tarfile.open(path) as archive:
                    archive.extractall(unpacked, filter="data")
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
            raise PipelineError(f"data.path {path} is not a readable .tar, .tar.gz or .zip "
                                f"archive ({error}); repack it or point at a directory") from None
        yield Path(unpacked)


def find_root(directory):
    """The folder holding train/ and test/: `directory` itself or its single subfolder."""
    candidates = [directory] + [child for child in sorted(directory.iterdir())
                                if child.is_dir() and not child.name.startswith(".")]
    for candidate in candidates:
        if all((candidate / split).is_dir() for split in SPLITS):
            return candidate
    raise PipelineError(f"{directory} has no train/ and test/ folders (looked at the top and one "
                        "level down): lay images out as train/<class>/*.jpg and test/<class>/*.jpg")


def list_split(root, split):
    """{class name: sorted image paths} of one split; hidden and non-image files are ignored."""
    classes = {}
    for class_dir in sorted((root / split).iterdir()):
        if class_dir.is_dir() and not class_dir.name.startswith("."):
            files = sorted(p for p in class_dir.iterdir() if p.is_file() and is_image_file(p))
            if not files:
                raise PipelineError(f"{class_dir} holds no images: add some or delete the folder")
            classes[class_dir.name] = files
    if not classes:
        raise PipelineError(f"{root / split} has no class folders: add {split}/<class>/*.jpg")
    return classes


def read_folder(path):
    """({split: Split}, class names) from a folder dataset; classes sorted by name."""
    with opened_source(path) as directory:
        root = find_root(directory)
        listing = {split: list_split(root, split) for split in SPLITS}
        train_classes, test_classes = list(listing["train"]), list(listing["test"])
        if train_classes != test_classes:
            only_train = sorted(set(train_classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(train_classes))
            raise PipelineError(f"{root}: train/ and test/ must have the same class folders "
                                f"(only in train: {only_train}, only in test: {only_test})")
        splits = {}
        for split, classes in listing.items():
            images, labels = [], []
            for label, files in enumerate(classes.values()):
                images += [load_rgb(file) for file in files]
                labels += [label] * len(files)
            splits[split] = Split(images, np.array(labels, dtype=np.int64))
        return splits, train_classes
