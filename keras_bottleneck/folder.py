"""The `folder` source: train/<class>/* and test/<class>/* images in a directory or archive.

A directory or archive is listed first (names only), checked, then read one file at a time in
the order it is stored, so an archive larger than memory works and a .tar.gz is decompressed
once per pass, never seeked back and forth.
"""
import hashlib
import os
import sys
import tarfile
import zipfile
from collections import defaultdict, deque
from pathlib import Path, PurePosixPath

from .datasets import SPLITS, RawWriter, write_classes
from .errors import PipelineError
from .images import IMAGE_SUFFIXES, check_decodes, is_image_file, unreadable_reason
from .parallel import ordered_map

TOP = PurePosixPath()
_SHOWN_SKIPPED = 5


class Tree:
    """The folders and files of a directory or archive, by path relative to its top."""

    def __init__(self, location, dirs, files, read_all):
        self.location = location
        self.files = files  # relative path -> what read_all needs to find it
        self._read_all = read_all
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

    def read(self, paths):
        """Yield (path, bytes) for each of `paths`, in the order they are stored."""
        return self._read_all(self, set(paths))

    def shown(self, path):
        """How to name `path` to the user: inside the directory or archive they gave."""
        return str(self.location) if path == TOP else f"{self.location}/{path}"


def _read_directory(tree, wanted):
    for path in sorted(wanted):
        yield path, tree.files[path].read_bytes()


def _read_zip(tree, wanted):
    with zipfile.ZipFile(tree.location) as archive:
        for path, info in sorted(tree.files.items(), key=lambda item: item[1].header_offset):
            if path in wanted:
                yield path, archive.read(info)


def _read_tar(tree, wanted):
    with tarfile.open(tree.location) as archive:
        for member in archive:
            path = PurePosixPath(member.name)
            if member.isfile() and path in wanted:
                yield path, archive.extractfile(member).read()


def _identity(path):
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def walk_once(top):
    """os.walk following symlinked folders, each folder visited once (by device and inode): a
    symlink loop ends, a folder linked twice is listed once. Sub-folders come sorted; the links
    left out are named in a warning."""
    seen, repeated = {_identity(top)}, []
    for folder, dir_names, file_names in os.walk(top, followlinks=True):
        kept = []
        for name in sorted(dir_names):
            identity = _identity(os.path.join(folder, name))
            (repeated if identity in seen else kept).append(os.path.join(folder, name))
            seen.add(identity)
        dir_names[:] = [os.path.basename(path) for path in kept]
        yield folder, dir_names, file_names
    if repeated:
        shown = ", ".join(repeated[:_SHOWN_SKIPPED])
        more = f" and {len(repeated) - _SHOWN_SKIPPED} more" \
            if len(repeated) > _SHOWN_SKIPPED else ""
        print(f"warning: {top}: skipped {len(repeated)} links to folders already listed "
              f"(a symlink loop, or two links to one folder): {shown}{more}", file=sys.stderr)


def read_tree(path):
    """The Tree of a directory, .tar, .tar.gz or .zip: names only, nothing read yet."""
    path = Path(path)
    if path.is_dir():
        dirs, files = set(), {}
        for folder, dir_names, file_names in walk_once(path):
            relative = PurePosixPath(Path(folder).relative_to(path).as_posix())
            dirs.update(relative / name for name in dir_names)
            files.update((relative / name, Path(folder) / name) for name in file_names)
        return Tree(path, dirs, files, _read_directory)
    if not path.exists():
        raise PipelineError(f"data.path {path} does not exist: point data.path at a directory "
                            "or archive holding train/<class>/ and test/<class>/ images")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
            # Some Windows tools write backslashes between folders, against the zip format.
            names = {member: PurePosixPath(member.filename.replace("\\", "/"))
                     for member in members}
            is_dir = {member: member.filename.endswith(("/", "\\")) for member in members}
            dirs = {names[member] for member in members if is_dir[member]}
            files = {names[member]: member for member in members if not is_dir[member]}
            return Tree(path, dirs, files, _read_zip)
        with tarfile.open(path) as archive:
            dirs, files = set(), {}
            for member in archive:
                if member.isdir():
                    dirs.add(PurePosixPath(member.name))
                elif member.isfile():
                    files[PurePosixPath(member.name)] = member.name
        return Tree(path, dirs, files, _read_tar)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
        raise PipelineError(archive_error(path, error)) from None


def archive_error(path, error):
    reason = " ".join(str(error).split())  # tarfile's reasons span several lines
    return (f"data.path {path} is not a readable .tar, .tar.gz or .zip archive ({reason}); "
            "repack it or point at a directory")


def find_root(tree):
    """The folder holding train/ and test/: the top or a single folder below it (as in an
    archive of one folder)."""
    for candidate in [TOP] + tree.subfolders(TOP):
        if all(candidate / split in tree.dirs for split in SPLITS):
            return candidate
    raise PipelineError(f"{tree.shown(TOP)} has no train/ and test/ folders (looked at the top "
                        "and one level down): lay images out as train/<class>/*.jpg and "
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


def skipped_files(tree, root, used):
    """{reason: sorted paths} of the files that are not read, so the user can see what was
    left out and why."""
    skipped = defaultdict(list)
    for path in sorted(tree.files.keys() - used):
        relative = path.relative_to(root) if path.is_relative_to(root) else None
        if any(part.startswith(".") for part in path.parts):
            reason = "hidden files"
        elif relative is None or relative.parts[0] not in SPLITS:
            reason = "files outside train/ and test/"
        elif len(relative.parts) != 3:
            reason = "files not directly in a class folder (train/<class>/ or test/<class>/)"
        elif unreadable_reason(path):
            reason = unreadable_reason(path)
        else:
            reason = (f"files that are not images (known suffixes: "
                      f"{' '.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))})")
        skipped[reason].append(path)
    return skipped


def warn_skipped(tree, skipped):
    for reason, paths in skipped.items():
        shown = ", ".join(str(path) for path in paths[:_SHOWN_SKIPPED])
        more = f" and {len(paths) - _SHOWN_SKIPPED} more" if len(paths) > _SHOWN_SKIPPED else ""
        print(f"warning: {tree.shown(TOP)}: skipped {len(paths)} {reason}: {shown}{more}",
              file=sys.stderr)


def list_folder(path):
    """(tree, class names, {split: [(path, label)]}) of a folder dataset, checked and in the
    dataset's order (classes sorted by name, files by name); skipped files are warned about."""
    tree = read_tree(path)
    root = find_root(tree)
    listing = {split: list_split(tree, root, split) for split in SPLITS}
    train_classes, test_classes = list(listing["train"]), list(listing["test"])
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise PipelineError(f"{tree.shown(root)}: train/ and test/ must have the same class "
                            f"folders (only in train: {only_train}, only in test: {only_test})")
    if len(train_classes) < 2:
        raise PipelineError(f"{tree.shown(root / 'train')} has a single class folder "
                            f"({train_classes[0]}): a classifier needs two or more, one folder "
                            "per class")
    images = {split: [(file, label) for label, files in enumerate(classes.values())
                      for file in files] for split, classes in listing.items()}
    used = {file for entries in images.values() for file, _ in entries}
    warn_skipped(tree, skipped_files(tree, root, used))
    return tree, train_classes, images


def _check_unless_known(data, name):
    """check_decodes, but None (no problem) for an image known to decode (`data` None)."""
    return None if data is None else check_decodes(data, name)


def fetch_folder(path, directory, earlier=None, progress=None):
    """Copy the images of a folder dataset into a raw dataset in `directory` as they are
    (encoded), after checking on every core that each decodes, but for those an earlier raw
    dataset holds (`earlier`, a storage.Earlier: decoded by an earlier run, and stored there
    already). Returns {split: count}, the class names and how many images were checked;
    raises one PipelineError naming the unreadable images."""
    tree, classes, images = list_folder(path)
    known = earlier.keys() if earlier is not None else frozenset()
    if progress is not None:
        progress.reset(total=sum(len(entries) for entries in images.values()))
    failures, checked = [], 0
    writer = RawWriter(directory, earlier)
    position = {}
    for split, entries in images.items():
        labels = dict(entries)
        position.update((str(file), i) for i, (file, _) in enumerate(entries))
        pending = deque()  # read but not yet checked: a few chunks at most

        def stream():
            for file, data in tree.read(labels):
                key = hashlib.sha256(data).digest()
                pending.append((file, data, key))
                yield (None if key in known else data), tree.shown(file)

        # Added in the order read, known or not, so the bytes are those of a full fetch.
        for failure in ordered_map(_check_unless_known, stream()):
            file, data, key = pending.popleft()
            writer.add(split, str(file), labels[file], data, key)
            checked += key not in known
            if progress is not None:
                progress.update(1)
            if failure:
                failures.append((tree.shown(file), failure))
    if failures:
        others = ", ".join(shown for shown, _ in failures[1:4])
        more = f" (also unreadable: {others}{', ...' if len(failures) > 4 else ''})" \
            if others else ""
        raise PipelineError(failures[0][1] + more)
    writer.close(order=lambda name: position[name])
    write_classes(classes, directory)
    return {split: len(entries) for split, entries in images.items()}, classes, checked
