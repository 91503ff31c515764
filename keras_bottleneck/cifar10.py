"""The `cifar10` source: the official python archive, checked against its published sha256."""
import http.client
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image

from .atomic import atomic_path
from .checksums import sha256_of
from .datasets import RawWriter, write_classes
from .errors import PipelineError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
KERAS_ARCHIVE_NAME = "cifar-10-batches-py-target_archive"  # keras.datasets.cifar10's copy
_MEMBERS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def download_dir():
    """Where downloads are kept: Keras' own dataset cache, so one download serves both
    (`keras.datasets.cifar10.load_data()` keeps the same archive there under its own name)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def locate_archive(data_path):
    """The archive to read: data.path itself if it is a file, data.path/cifar-10-python.tar.gz,
    or an earlier download (ours or Keras'); None if there is none."""
    data_path = Path(data_path)
    for candidate in (data_path, data_path / ARCHIVE_NAME, download_dir() / ARCHIVE_NAME,
                      download_dir() / KERAS_ARCHIVE_NAME):
        if candidate.is_file():
            return candidate
    return None


def download(destination, data_path, url=URL, timeout=60):
    """Download the archive to `destination`; offline, fail with one line saying what to
    download and where to put it (`data_path` is the user's data.path)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, \
                atomic_path(destination) as tmp, open(tmp, "wb") as file:
            while block := response.read(1 << 20):
                file.write(block)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        data_path = Path(data_path)
        local_copy = data_path if data_path.suffix else data_path / ARCHIVE_NAME
        raise PipelineError(f"cannot download {url} ({reason}): get {URL} on a machine with "
                            f"network and save it as {local_copy}, or set data.path to where a "
                            "copy is") from None
    return destination


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG", compress_level=1)  # lossless; speed over size
    return buffer.getvalue()


def fetch_archive(path, directory, sha256=SHA256, earlier=None):
    """Write the images of a cifar-10-python.tar.gz, after checking its sha256, to a raw dataset
    in `directory` (each image a lossless PNG, in the archive's order, named after its batch);
    images an earlier raw dataset holds (`earlier`, a storage.Earlier) keep their chunks.
    Returns {split: count} and the class names."""
    actual = sha256_of(path)
    if actual != sha256:
        raise PipelineError(f"{path} has sha256 {actual}, not the published {sha256}: it is "
                            f"corrupt or not {ARCHIVE_NAME}; delete it and download it again")
    counts = {}
    with tarfile.open(path, "r:gz") as archive:
        def load(member):  # one batch of 10,000 images (30 MB) at a time
            return pickle.load(archive.extractfile(f"cifar-10-batches-py/{member}"),
                               encoding="bytes")
        classes = [name.decode() for name in load("batches.meta")[b"label_names"]]
        writer = RawWriter(directory, earlier)
        for split, members in _MEMBERS.items():
            for member in members:
                batch = load(member)
                images = batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                for i, (image, label) in enumerate(zip(images, batch[b"labels"])):
                    writer.add(split, f"{member}/{i}", label, _png(image))
            counts[split] = len(writer.entries[split])
        writer.close()
    write_classes(classes, directory)
    return counts, classes


def fetch_cifar10(data_path, directory, earlier=None):
    archive = locate_archive(data_path) or download(download_dir() / ARCHIVE_NAME, data_path)
    return fetch_archive(archive, directory, earlier=earlier)
