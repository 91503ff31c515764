"""Incremental processing: what an earlier run computed for an image is reused, not redone.

Three stages work image by image. Each stores its rows in chunks whose manifests say which
image each row came from (a key: SHA-256, see storage), and says in fingerprint.json what else
the rows depend on:

- fetch (data/raw): the key of each image's encoded bytes. An image an earlier raw dataset with
  the same decoder holds is known to decode, and is not decoded again to check it.
- preprocess (data/prepared): the same key, of the source image each resized row came from. Rows
  of an earlier preparation at the same size, by the same decoder, are reused, not decoded.
- extract (data/features): the key of the prepared image's pixels. Features computed the same way
  (same backbone, weights, storage type, batch shape, library versions) are reused; the backbone
  runs on the other images only.

The earlier outputs a stage looks at are every one this workspace can reach: the output
directory itself if it is there (a stage run by hand; `dvc repro` deletes a stage's outputs
before running it), the version dvc.lock records and every version DVC's run-cache records,
read from DVC's cache. Their chunks come into the new output as the very same files (see
storage.Writer): DVC's cache, `dvc push` and `dvc pull` move only the new ones. Outputs in the
single-file layout of earlier versions of this project are read too, so an upgraded project
does no work twice.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from .npy_stream import as_rows
from .storage import Earlier

FINGERPRINT = "fingerprint.json"


def row_keys(images, batch_size=256):
    """SHA-256 of every row (image) of `images` (storage.Rows or alike, or a .npy path), as an
    (N, 32) uint8 array."""
    rows = as_rows(images)
    keys = np.zeros((len(rows), 32), np.uint8)
    for start in range(0, len(rows), batch_size):
        batch = rows.read(np.arange(start, min(start + batch_size, len(rows))))
        for offset, image in enumerate(batch):
            keys[start + offset] = np.frombuffer(hashlib.sha256(image.tobytes()).digest(),
                                                 np.uint8)
    return keys


def _listing(out_dir):
    return {path.relative_to(out_dir).as_posix(): path
            for path in sorted(out_dir.rglob("*")) if path.is_file()}


def _matching(out_dir, current, lock_path):
    """The earlier versions of directory output `out_dir` ({relative name: path} each) whose
    fingerprint is `current`, and how many others there are."""
    out_dir = Path(out_dir)
    versions = [_listing(out_dir)] if out_dir.is_dir() else []
    versions += _versions_in_dvc_cache(out_dir, Path(lock_path))
    matching = [files for files in versions if FINGERPRINT in files and
                json.loads(Path(files[FINGERPRINT]).read_text()) == current]
    return matching, len(versions) - len(matching)


def find_earlier(out_dir, current, rows="features", lock_path="dvc.lock"):
    """A storage.Earlier of every earlier version of `out_dir` made the same way (fingerprint
    `current`) that this workspace can reach: `out_dir` in the workspace (a stage run by hand),
    the version dvc.lock records, and every one in DVC's run-cache (earlier runs and
    experiments, and a teammate's pulled with `dvc pull --run-cache`), all read from DVC's
    cache; `rows` names the single-file layout's row files (`<split>_<rows>.npy`). Also returns
    how many were found and how many were skipped because their fingerprint differs."""
    matching, other = _matching(out_dir, current, lock_path)
    return Earlier(matching, rows), len(matching), other


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
