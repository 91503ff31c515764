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

from .errors import PipelineError

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
        self.spans = np.load(paths["spans.npy"])
        self.labels = np.load(paths["labels.npy"])
        self.names = json.loads(paths["names.json"].read_text())
        self.keys = np.load(paths["keys.npy"])

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
        return file.read(length)


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
    return json.loads(path.read_text())


def split_inputs(directory, kind):
    """{split: (path of <split>_<kind>.npy, labels)}: the inputs stay on disk, to be read batch
    by batch."""
    directory = Path(directory)
    return {name: (directory / f"{name}_{kind}.npy", np.load(directory / f"{name}_labels.npy"))
            for name in PREPARED_SPLITS}
