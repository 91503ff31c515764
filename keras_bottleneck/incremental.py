"""Incremental extraction: reuse the features of images the backbone has already seen.

Each row of data/features/<split>_keys.npy is the SHA-256 of the prepared image it was computed
from (its pixels after decoding and resizing), and fingerprint.json says what else the numbers
depend on (backbone, weights, storage type, batch shape, library versions). Before extracting,
`extract` looks up every earlier extraction this workspace can reach: data/features if it is
there (a stage run by hand; `dvc repro` deletes a stage's outputs before running it), the version
dvc.lock records and every version DVC's run-cache records, read from DVC's cache. Rows whose
image and fingerprint match are copied; the backbone runs on the others only. No store is
added: the earlier features are already in DVC's cache, and travel with `dvc push` and
`dvc pull` (`--run-cache` for the run-cache's) like every output.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from .checksums import sha256_of
from .npy_stream import NpyRows, iter_batches

FINGERPRINT = "fingerprint.json"
FORMAT = 1


def fingerprint(backbone, extract):
    """What an image's features depend on besides its pixels. Batch size counts: floating-point
    results may differ in the last bits between batch shapes (every batch is padded to it)."""
    import keras
    import tensorflow as tf
    weights = backbone["weights"]
    if weights not in ("imagenet", "none"):
        weights = "sha256:" + sha256_of(weights)
    from .backbones import REGISTRY
    return {"format": FORMAT, "backbone": backbone["name"], "weights": weights,
            "alpha": backbone["alpha"] if REGISTRY[backbone["name"]].has_alpha else None,
            "dtype": extract["dtype"], "batch_size": extract["batch_size"],
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__}


def row_keys(images_path, batch_size=256):
    """SHA-256 of every row (image) of a .npy file, as an (N, 32) uint8 array."""
    count = NpyRows(images_path).shape[0]
    keys = np.zeros((count, 32), np.uint8)
    row = 0
    for batch in iter_batches(images_path, batch_size):
        for image in batch:
            keys[row] = np.frombuffer(hashlib.sha256(image.tobytes()).digest(), np.uint8)
            row += 1
    return keys


class Previous:
    """Features computed before, by key: {key bytes: (features file, row)}; built from a list
    of {split: (keys path, features path)}."""

    def __init__(self, extractions=()):
        self.rows, self.readers = {}, {}
        for extraction in extractions:
            for keys_path, features_path in extraction.values():
                self.readers.setdefault(str(features_path), NpyRows(features_path))
                for row, key in enumerate(np.load(keys_path)):
                    self.rows.setdefault(key.tobytes(), (str(features_path), row))

    def __len__(self):
        return len(self.rows)

    def find(self, keys):
        """For each key, (features file name, row) or None."""
        return [self.rows.get(key.tobytes()) for key in keys]

    def read(self, locations):
        """The feature rows at `locations` ((file name, row) pairs), in that order."""
        first = self.readers[locations[0][0]]
        rows = np.empty((len(locations),) + tuple(first.shape[1:]), first.dtype)
        by_file = {}
        for i, (name, row) in enumerate(locations):
            by_file.setdefault(name, []).append((i, row))
        for name, items in by_file.items():
            positions, source_rows = zip(*items)
            rows[list(positions)] = self.readers[name].read(list(source_rows))
        return rows


def _lookup(files):
    """{split: (keys path, features path)} for every split that has both, from {name: path}."""
    found = {}
    for name, path in files.items():
        if name.endswith("_keys.npy"):
            split = name[:-len("_keys.npy")]
            if f"{split}_features.npy" in files:
                found[split] = (path, files[f"{split}_features.npy"])
    return found


def find_previous(features_dir, current, lock_path="dvc.lock"):
    """A Previous of every earlier extraction computed the same way (same fingerprint) that this
    workspace can reach: the `features_dir` in the workspace (a stage run by hand), the one
    dvc.lock records, and every one in DVC's run-cache (earlier runs and experiments, and a
    teammate's pulled with `dvc pull --run-cache`), all read from DVC's cache. Also returns
    how many were found and how many were skipped because their fingerprint differs."""
    features_dir = Path(features_dir)
    sources = []
    if features_dir.is_dir():
        sources.append({path.name: path for path in features_dir.iterdir()})
    sources += _extractions_in_dvc_cache(features_dir, Path(lock_path))
    matching, other = [], 0
    for files in sources:
        if FINGERPRINT in files and json.loads(Path(files[FINGERPRINT]).read_text()) == current:
            matching.append(files)
        else:
            other += 1
    return Previous([_lookup(files) for files in matching]), len(matching), other


def _extractions_in_dvc_cache(features_dir, lock_path):
    """{relative name: cache path} of each version of `features_dir` that dvc.lock or the
    run-cache records and whose listing is in DVC's cache."""
    import yaml
    root = lock_path.parent.resolve()
    if not (root / ".dvc").is_dir():
        return []
    from dvc.repo import Repo
    with Repo(str(root)) as repo:
        cache, runs = repo.cache.local, Path(repo.stage_cache.cache_dir)
        records = [lock_path] if lock_path.exists() else []
        records += sorted(path for path in runs.glob("*/*/*") if path.is_file()) \
            if runs.is_dir() else []
        listings = []
        for record in records:
            entry = yaml.safe_load(record.read_text()) or {}
            stages = entry.get("stages", {}).values() if record == lock_path else [entry]
            for stage in stages:
                for out in stage.get("outs", []):
                    md5 = out.get("md5", "")
                    if Path(out["path"]) == features_dir and md5.endswith(".dir") and \
                            md5 not in listings:
                        listings.append(md5)
        found = []
        for md5 in listings:
            listing = Path(cache.oid_to_path(md5))
            if listing.exists():
                files = {entry["relpath"]: Path(cache.oid_to_path(entry["md5"]))
                         for entry in json.loads(listing.read_text())}
                found.append({name: path for name, path in files.items() if path.exists()})
        return found
