"""The raw dataset on disk: images as the user gave them (JPEG, PNG... bytes, never decoded
pixels), stored in chunks (see storage) with each split's labels, names (each image's source
name) and keys (the SHA-256 of each image's bytes, by which later stages recognise images they
have already processed), all in the dataset's order. Its size is about that of the source images
whatever their resolution; adding images adds chunks holding them, and leaves the others as
they were.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from . import storage
from .atomic import read_json
from .errors import PipelineError

SPLITS = ("train", "test")  # of the raw dataset
# Of the prepared images and the features: validation is held out of the chosen train images
# (empty unless prepare.validation_count is set).
PREPARED_SPLITS = ("train", "validation", "test")


class RawWriter:
    """Encoded images of every split as they arrive (e.g. in an archive's order); `close`
    writes each split's index in the dataset's order. Images an earlier raw dataset holds
    (`earlier`, a storage.Earlier) are not stored again: their chunks are kept or copied."""

    def __init__(self, directory, earlier=None):
        self.store = storage.Writer(directory, storage.BYTES, earlier)
        self.entries = {split: [] for split in SPLITS}  # (name, label, key)

    def add(self, split, name, label, data, key=None):
        """One image; `key` is the SHA-256 digest of `data`, if already computed."""
        key = key or hashlib.sha256(data).digest()
        if self.store.needs(key):
            self.store.add(key, data)
        self.entries[split].append((name, int(label), key))

    def close(self, order=None):
        """Write each split's index, sorted by `order(name)` if given, else in arrival order."""
        splits = {}
        for split, entries in self.entries.items():
            if order is not None:
                entries = sorted(entries, key=lambda entry: order(entry[0]))
            keys = np.frombuffer(b"".join(entry[2] for entry in entries), np.uint8)
            splits[split] = (keys.reshape(-1, 32), [entry[1] for entry in entries],
                             [entry[0] for entry in entries])
        self.store.finish(splits)


class RawSplit(storage.Split):
    """One split of a raw dataset: its index in memory (a few bytes an image), its images read
    from their chunks one at a time (`read(i)`, `locate(i)`)."""



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
    shape = storage.read_split(directory, "train").rows.shape
    if tuple(shape[1:3]) != (prepare.img_size, prepare.img_size):
        raise PipelineError(f"{directory} holds images of {shape[1]}x{shape[2]} px but "
                            f"prepare.img_size is {prepare.img_size}: run `dvc repro` to "
                            "prepare them again")
    return prepare.img_size


def split_inputs(directory):
    """{split: (rows, labels)} of data/prepared or data/features (see storage.read_split): the
    rows stay on disk, to be read batch by batch."""
    return {name: (split.rows, split.labels)
            for name, split in ((name, storage.read_split(directory, name))
                                for name in PREPARED_SPLITS)}
