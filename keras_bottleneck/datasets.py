"""The raw dataset on disk: images as the user gave them, a few large files per split.

Each split is one file of encoded images (JPEG, PNG... bytes, never decoded pixels) back to back,
`<split>_spans.npy` (offset and length of each image in it), `<split>_labels.npy`,
`<split>_names.json` (each image's source name) and `<split>_keys.npy` (the SHA-256 of each
image's bytes, by which later stages recognise images they have already processed), all in the
dataset's order. Its size is about
that of the source images whatever their resolution, and DVC hashes a handful of files instead
of one per image.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from . import npy_stream
from .atomic import read_json
from .errors import PipelineError, damaged

SPLITS = ("train", "test")  # of the raw dataset
# Of the prepared images and the features: validation is held out of the chosen train images
# (empty unless prepare.validation_count is set).
PREPARED_SPLITS = ("train", "validation", "test")


def _files(directory, split):
    directory = Path(directory)
    return {kind: directory / f"{split}_{kind}" for kind in
            ("images.bin", "spans.npy", "labels.npy", "names.json", "keys.npy")}


class RawWriter:
    """Append encoded images of one split as they arrive (e.g. in an archive's order); `close`
    writes the index in the dataset's order."""

    def __init__(self, directory, split):
        self.paths = _files(directory, split)
        self._file = open(self.paths["images.bin"], "wb")
        self.entries = []  # (name, label, offset, length, key)
        self._offset = 0

    def add(self, name, label, data, key=None):
        """Append one image; `key` is the SHA-256 digest of `data`, if already computed."""
        self._file.write(data)
        key = key or hashlib.sha256(data).digest()
        self.entries.append((name, int(label), self._offset, len(data), key))
        self._offset += len(data)

    def close(self, key=None):
        """Write the index, sorted by `key(name, label)` if given, else in arrival order."""
        self._file.close()
        entries = sorted(self.entries, key=lambda e: key(e[0], e[1])) if key else self.entries
        spans = np.array([entry[2:4] for entry in entries], np.int64).reshape(-1, 2)
        np.save(self.paths["spans.npy"], spans)
        keys = np.frombuffer(b"".join(entry[4] for entry in entries), np.uint8)
        np.save(self.paths["keys.npy"], keys.reshape(-1, 32))
        np.save(self.paths["labels.npy"], np.array([e[1] for e in entries], np.int64))
        self.paths["names.json"].write_text(json.dumps([e[0] for e in entries], indent=0) + "\n")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self._file.close()


class RawSplit:
    """One split of a raw dataset: its index in memory (a few dozen bytes an image), its images
    read from disk one at a time."""

    def __init__(self, directory, split):
        paths = _files(directory, split)
        missing = [str(path) for path in paths.values() if not path.exists()]
        if missing:
            raise PipelineError(f"{missing[0]} is missing: run the earlier stages first "
                                "(dvc repro)")
        self.images_path = paths["images.bin"]
        self.spans = npy_stream.load(paths["spans.npy"])
        self.labels = npy_stream.load(paths["labels.npy"])
        self.names = read_json(paths["names.json"])
        self.keys = npy_stream.load(paths["keys.npy"])
        if self.spans.size and self.spans[-1].sum() > self.images_path.stat().st_size:
            raise damaged(self.images_path, f"{self.images_path.stat().st_size} bytes where "
                          f"its index needs {self.spans[-1].sum()}: cut short")

    def __len__(self):
        return len(self.labels)

    def read(self, index):
        """The encoded bytes of image `index`."""
        return read_span(self.images_path, *self.spans[index])

    def locate(self, index):
        """(file, offset, length, name) of image `index`: enough for another process to read it."""
        return (str(self.images_path), int(self.spans[index][0]), int(self.spans[index][1]),
                self.names[index])


def read_span(path, offset, length):
    with open(path, "rb") as file:
        file.seek(offset)
        data = file.read(length)
    if len(data) != length:
        raise damaged(path, f"an image's {length} bytes at {offset} end after {len(data)}")
    return data


def same_bytes(directory):
    """Images of a raw dataset whose bytes are the very same (by SHA-256): ([(train name, test
    name)] for each test image that is also a train image, {split: how many images repeat one
    earlier in the split})."""
    splits = {split: RawSplit(directory, split) for split in SPLITS}
    first_train = {}
    for key, name in zip(map(bytes, splits["train"].keys), splits["train"].names):
        first_train.setdefault(key, name)
    across = [(first_train[key], name)
              for key, name in zip(map(bytes, splits["test"].keys), splits["test"].names)
              if key in first_train]
    within = {split: len(raw) - len(np.unique(raw.keys, axis=0)) if len(raw) else 0
              for split, raw in splits.items()}
    return across, within


def raw_fingerprint():
    """What a raw dataset's images depend on besides the source's bytes: the decoder that
    checked them (fetch) or encoded them (cifar10)."""
    import PIL
    return {"format": 1, "pillow": PIL.__version__}


def write_classes(classes, directory):
    (Path(directory) / "classes.json").write_text(json.dumps(list(classes), indent=1) + "\n")


def read_classes(directory):
    path = Path(directory) / "classes.json"
    if not path.exists():
        raise PipelineError(f"{path} is missing: run the earlier stages first (dvc repro)")
    return read_json(path)


def prepared_img_size(directory, prepare):
    """prepare.img_size (params section `prepare`), the one side every stage after preprocess
    works at, checked against the prepared images: images prepared at another size are stale."""
    path = Path(directory) / "train_images.npy"
    if not path.exists():
        raise PipelineError(f"{path} is missing: run the earlier stages first (dvc repro)")
    shape = npy_stream.read_header(path)[0]
    if tuple(shape[1:3]) != (prepare.img_size, prepare.img_size):
        raise PipelineError(f"{directory} holds images of {shape[1]}x{shape[2]} px but "
                            f"prepare.img_size is {prepare.img_size}: run `dvc repro` to "
                            "prepare them again")
    return prepare.img_size


def split_inputs(directory, kind):
    """{split: (path of <split>_<kind>.npy, labels)}: the inputs stay on disk, to be read batch
    by batch."""
    directory = Path(directory)
    return {name: (directory / f"{name}_{kind}.npy",
                   npy_stream.load(directory / f"{name}_labels.npy"))
            for name in PREPARED_SPLITS}
