"""Shared by the end-to-end tests (test_pipeline.py, test_interruption.py): what dvc.yaml
declares, a project copy shared by a whole test module, and snapshots of files that show
whether a run touched them."""
from pathlib import Path

import numpy as np
import yaml

from conftest import make_folder_dataset, make_project, subprocess_env
from keras_bottleneck import storage

UP_TO_DATE = "Data and pipelines are up to date"

# DVC's behaviour does not depend on the backbone. VGG16 has the fewest layers to trace (ResNet50
# doubles the time of every train_frozen run) and, unlike MobileNet (V1 and V2) with
# `weights: none`, its features are not all zero, so "same bytes"/"new bytes" checks mean something.
FAST_BACKBONE = {"backbone.name": "vgg16"}


def dvc_yaml(root):
    return yaml.safe_load((Path(root) / "dvc.yaml").read_text())


def _paths(entries):
    """Paths of a dvc.yaml list whose items are a path or {path: options}."""
    for entry in entries or []:
        yield from ([entry] if isinstance(entry, str) else entry)


def declared_outputs(root, stage=None, kinds=("outs", "metrics", "plots")):
    """Every path that dvc.yaml declares as `kinds` of `stage` (default: of every stage)."""
    stages = dvc_yaml(root)["stages"]
    chosen = [stages[stage]] if stage else stages.values()
    return [path for spec in chosen for kind in kinds for path in _paths(spec.get(kind))]


def stage_names(root):
    return set(dvc_yaml(root)["stages"])


def snapshot(directory):
    """{relative path: (inode, mtime in ns, bytes)} of every file under `directory`."""
    directory = Path(directory)
    return {str(path.relative_to(directory)): (path.stat().st_ino, path.stat().st_mtime_ns,
                                               path.read_bytes())
            for path in sorted(directory.rglob("*")) if path.is_file()}


def contents(snap):
    """Only the bytes of a snapshot: what must match between two separate runs."""
    return {name: data for name, (_, _, data) in snap.items()}


def npy_shape(path):
    return np.load(path, mmap_mode="r").shape


def split_shape(directory, split):
    """The shape of a stored split's rows (data/prepared, data/features)."""
    return storage.read_split(directory, split).rows.shape


def stored_rows(directory, split):
    return storage.read_split(directory, split).rows[:]


def chunk_files(directory):
    """{name: bytes} of the chunk files of a stored output: what DVC stores and moves."""
    folder = Path(directory) / storage.CHUNKS
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def varies(array):
    """Whether an array holds more than one value (a degenerate array proves nothing)."""
    return bool(array.size) and bool((array != array.flat[0]).any())


def module_project(tmp_path_factory, name, dataset=None, **params):
    """A project copy (conftest.make_project, with FAST_BACKBONE) on a new folder dataset
    (make_folder_dataset(**dataset)), for one test module: a full `dvc repro` takes ~40 s, so
    a module walks one project through several steps. Returns (project, dataset folder)."""
    root = tmp_path_factory.mktemp(name)
    images = make_folder_dataset(root / "images", **(dataset or {}))
    project = make_project(root / "project", subprocess_env(root), images,
                           **{**FAST_BACKBONE, **params})
    return project, images
