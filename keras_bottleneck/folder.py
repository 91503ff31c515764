"""The `folder` source: train/<class>/* and test/<class>/* images in a directory or archive."""
import io
import os
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np

from .datasets import SPLITS, Split
from .errors import PipelineError
from .images import is_image_file, load_rgb

TOP = PurePosixPath()


class Tree:
    """The folders and files of a directory or archive, by path relative to its top."""

    def __init__(self, location, dirs, files):
        self.location = location
        self.files = files  # relative path -> Path on disk, or the bytes of an archive member
        # Archives need not list folders, only the files in them.
        self.dirs = set(dirs) | {parent for path in files for parent in path.parents}
        self.dirs.discard(TOP)
        self.children = defaultdict(list)
        for path in self.dirs | files.keys():
            self.children[path.parent].append(path)

    def subfolders(self, folder):
        """Non-hidden folders directly in `folder`, sorted by name."""
        return sorted(path for path in self.children[folder]
                      if path in self.dirs and not path.name.startswith("."))

    def images(self, folder):
        """Image files directly in `folder`, sorted by name; other and hidden files are ignored."""
        return sorted(path for path in self.children[folder]
                      if path in self.files and is_image_file(path))

    def open(self, path):
        file = self.files[path]
        return io.BytesIO(file) if isinstance(file, bytes) else file

    def shown(self, path):
        """How to name `path` to the user: inside the directory or archive they gave."""
        return str(self.location) if path == TOP else f"{self.location}/{path}"


def read_tree(path):
    """The Tree of a directory, or of a .tar/.tar.gz/.zip read into memory in one pass: seeking
    back and forth in a .tar.gz would decompress it again and again, and unpacking thousands of
    small files to disk is slower than decoding them. The compressed images take less memory
    than the decoded ones that read_folder keeps anyway."""
    path = Path(path)
    if path.is_dir():
        dirs, files = set(), {}
        for folder, dir_names, file_names in os.walk(path, followlinks=True):
            relative = PurePosixPath(Path(folder).relative_to(path).as_posix())
            dirs.update(relative / name for name in dir_names)
            files.update((relative / name, Path(folder) / name) for name in file_names)
        return Tree(path, dirs, files)
    if not path.exists():
        raise PipelineError(f"data.path {path} does not exist: point data.path at a directory "
                            "or archive holding train/<class>/ and test/<class>/ images")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
                dirs = {PurePosixPath(member.filename) for member in members if member.is_dir()}
                files = {PurePosixPath(member.filename): archive.read(member)
                         for member in members if not member.is_dir()}
        else:
            with tarfile.open(path) as archive:
                dirs, files = set(), {}
                for member in archive:
                    if member.isdir():
                        dirs.add(PurePosixPath(member.name))
                    elif member.isfile():
                        files[PurePosixPath(member.name)] = archive.extractfile(member).read()
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
        reason = " ".join(str(error).split())  # tarfile's reasons span several lines
        raise PipelineError(f"data.path {path} is not a readable .tar, .tar.gz or .zip "
                            f"archive ({reason}); repack it or point at a directory") from None
    return Tree(path, dirs, files)


def find_root(tree):
    """The folder holding train/ and test/: the top or a single folder below it (as in an
    archive of one folder)."""
    for candidate in [TOP] + tree.subfolders(TOP):
        if all(candidate / split in tree.dirs for split in SPLITS):
            return candidate
    raise PipelineError(f"{tree.location} has no train/ and test/ folders (looked at the top and "
                        "one level down): lay images out as train/<class>/*.jpg and "
                        "test/<class>/*.jpg")


def list_split(tree, root, split):
    """{class name: sorted image paths} of one split."""
    classes = {}
    for class_dir in tree.subfolders(root / split):
        files = tree.images(class_dir)
        if not files:
            raise PipelineError(f"{tree.shown(class_dir)} holds no images: add some or delete "
                                "the folder")
        classes[class_dir.name] = files
    if not classes:
        raise PipelineError(f"{tree.shown(root / split)} has no class folders: "
                            f"add {split}/<class>/*.jpg")
    return classes


def read_folder(path):
    """({split: Split}, class names) from a folder dataset; classes sorted by name."""
    tree = read_tree(path)
    root = find_root(tree)
    listing = {split: list_split(tree, root, split) for split in SPLITS}
    train_classes, test_classes = list(listing["train"]), list(listing["test"])
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise PipelineError(f"{tree.shown(root)}: train/ and test/ must have the same class "
                            f"folders (only in train: {only_train}, only in test: {only_test})")
    splits = {}
    for split, classes in listing.items():
        images, labels = [], []
        for label, files in enumerate(classes.values()):
            images += [load_rgb(tree.open(file), tree.shown(file)) for file in files]
            labels += [label] * len(files)
        splits[split] = Split(images, np.array(labels, dtype=np.int64))
    return splits, train_classes
