"""Write outputs under a temporary name and rename them into place when complete.

An interrupted stage therefore never leaves a half-written file at an output path that DVC
(or a user running `dvc commit`) could mistake for a result. JSON is read back checked.
"""
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from .errors import damaged


def _remove(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(path, directory=False):
    """Yield a temporary path beside `path` (same suffix, so savers that check it work);
    on success it replaces `path`, on failure it is removed. Leftovers of killed runs are
    removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.stem}.tmp-*"):
        _remove(stale)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if directory:
            _remove(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def write_json(path, data):
    """Write `data` as indented JSON to `path`, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")


def read_json(path):
    """The data of a JSON file; a file that is not whole JSON is named as damaged."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise damaged(path, f"not valid JSON: {error}") from None
