"""Incremental processing: what an earlier run computed for an image is reused, not redone.

Three stages work image by image, and each output says which image each of its rows came from,
in `<split>_keys.npy` (one SHA-256 a row), and what else the rows depend on, in fingerprint.json:

- fetch (data/raw): the key of each image's encoded bytes. An image an earlier raw dataset with
  the same decoder holds is known to decode, and is not decoded again to check it.
- preprocess (data/prepared): the same key, of the source image each resized row came from. Rows
  of an earlier preparation at the same size, by the same decoder, are copied, not decoded.
- extract (data/features): the key of the prepared image's pixels. Features computed the same way
  (same backbone, weights, storage type, batch shape, library versions) are copied; the backbone
  runs on the other images only.

The earlier outputs a stage looks at are every one this workspace can reach: the output
directory itself if it is there (a stage run by hand; `dvc repro` deletes a stage's outputs
before running it), the version dvc.lock records and every version DVC's run-cache records,
read from DVC's cache. No store is added: the earlier outputs are already in DVC's cache, and
travel with `dvc push` and `dvc pull` (`--run-cache` for the run-cache's) like every output.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from .npy_stream import NpyRows, NpyWriter, iter_batches

FINGERPRINT = "fingerprint.json"


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
    """Rows computed before, by key: {key bytes: (rows file, row)}; built from a list of
    {split: (keys path, rows path)}."""

    def __init__(self, extractions=()):
        self.rows, self.readers = {}, {}
        for extraction in extractions:
            for keys_path, features_path in extraction.values():
                self.readers.setdefault(str(features_path), NpyRows(features_path))
                for row, key in enumerate(np.load(keys_path)):
                    self.rows.setdefault(key.tobytes(), (str(features_path), row))

    def find(self, keys):
        """For each key, (rows file name, row) or None."""
        return [self.rows.get(key.tobytes()) for key in keys]

    def read(self, locations):
        """The rows at `locations` ((file name, row) pairs), in that order."""
        first = self.readers[locations[0][0]]
        rows = np.empty((len(locations),) + tuple(first.shape[1:]), first.dtype)
        by_file = {}
        for i, (name, row) in enumerate(locations):
            by_file.setdefault(name, []).append((i, row))
        for name, items in by_file.items():
            positions, source_rows = zip(*items)
            rows[list(positions)] = self.readers[name].read(list(source_rows))
        return rows


def write_rows(path, shape, dtype, found, previous, computed, chunk_size, progress=None):
    """Write an array of `shape` to the .npy `path`, a chunk of rows at a time: row i is read
    from `previous` (an incremental.Previous) at `found[i]`, or, where that is None, taken from
    the iterator `computed`, which yields the missing rows in order."""
    with NpyWriter(path, shape, dtype) as writer:
        for start in range(0, shape[0], chunk_size):
            stop = min(start + chunk_size, shape[0])
            chunk = np.empty((stop - start,) + tuple(shape[1:]), writer.dtype)
            reused = [(i - start, found[i]) for i in range(start, stop) if found[i] is not None]
            if reused:
                positions, locations = zip(*reused)
                chunk[list(positions)] = previous.read(list(locations))
            for i in range(start, stop):
                if found[i] is None:
                    chunk[i - start] = next(computed)
            writer.write(chunk)
            if progress is not None:
                progress.update(stop - start)


def _lookup(files, rows):
    """{split: (keys path, rows path)} for every split that has both <split>_keys.npy and
    <split>_<rows>.npy, from {name: path}."""
    found = {}
    for name, path in files.items():
        if name.endswith("_keys.npy"):
            split = name[:-len("_keys.npy")]
            if f"{split}_{rows}.npy" in files:
                found[split] = (path, files[f"{split}_{rows}.npy"])
    return found


def _matching(out_dir, current, lock_path):
    """The earlier versions of directory output `out_dir` ({name: path} each) whose fingerprint
    is `current`, and how many others there are."""
    out_dir = Path(out_dir)
    versions = [{path.name: path for path in out_dir.iterdir()}] if out_dir.is_dir() else []
    versions += _versions_in_dvc_cache(out_dir, Path(lock_path))
    matching = [files for files in versions if FINGERPRINT in files and
                json.loads(Path(files[FINGERPRINT]).read_text()) == current]
    return matching, len(versions) - len(matching)


def find_previous(out_dir, current, rows="features", lock_path="dvc.lock"):
    """A Previous of the `<split>_<rows>.npy` rows of every earlier version of `out_dir` made the
    same way (fingerprint `current`) that this workspace can reach: `out_dir` in the workspace
    (a stage run by hand), the version dvc.lock records, and every one in DVC's run-cache
    (earlier runs and experiments, and a teammate's pulled with `dvc pull --run-cache`), all
    read from DVC's cache. Also returns how many were found and how many were skipped because
    their fingerprint differs."""
    matching, other = _matching(out_dir, current, lock_path)
    return Previous([_lookup(files, rows) for files in matching]), len(matching), other


def earlier_keys(out_dir, current, lock_path="dvc.lock"):
    """The keys (bytes) of every row of every earlier version of `out_dir` made the same way,
    looked up as find_previous does."""
    matching, _ = _matching(out_dir, current, lock_path)
    return {key.tobytes() for files in matching for name, path in files.items()
            if name.endswith("_keys.npy") for key in np.load(path)}


def _versions_in_dvc_cache(out_dir, lock_path):
    """{relative name: cache path} of each version of directory output `out_dir` that dvc.lock
    or the run-cache records and whose listing is in DVC's cache."""
    import yaml
    root = lock_path.parent.resolve()
    if not (root / ".dvc").is_dir():
        return []
    from dvc.repo import Repo
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with Repo(str(root)) as repo:
        cache, runs = repo.cache.local, Path(repo.stage_cache.cache_dir)
        records = [lock_path] if lock_path.exists() else []
        records += sorted(path for path in runs.glob("*/*/*") if path.is_file()) \
            if runs.is_dir() else []
        listings = []
        for record in records:
            entry = yaml.load(record.read_text(), Loader=loader) or {}
            stages = entry.get("stages", {}).values() if record == lock_path else [entry]
            for stage in stages:
                for out in stage.get("outs", []):
                    md5 = out.get("md5", "")
                    if Path(out["path"]) == out_dir and md5.endswith(".dir") and \
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
