"""Outputs appear at their path complete or not at all."""
import os

import pytest

from keras_bottleneck.atomic import atomic_path


class Interrupted(Exception):
    pass


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def test_file_written_then_renamed(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json"
        tmp.write_text("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("directory", [False, True])
def test_failure_leaves_nothing_at_a_new_target(tmp_path, directory):
    target = tmp_path / "raw"
    with pytest.raises(Interrupted):
        with atomic_path(target, directory=directory) as tmp:
            (tmp / "half.npy" if directory else tmp).write_bytes(b"half")
            raise Interrupted
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_failure_keeps_the_previous_output(tmp_path):
    target = tmp_path / "raw"
    target.mkdir()
    (target / "old.npy").write_bytes(b"old")
    with pytest.raises(Interrupted):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "new.npy").write_bytes(b"half")
            raise Interrupted
    assert [p.name for p in target.iterdir()] == ["old.npy"]


def test_success_replaces_an_existing_directory(tmp_path):
    target = tmp_path / "features"
    target.mkdir()
    (target / "stale.npy").write_bytes(b"from an earlier run")
    with atomic_path(target, directory=True) as tmp:
        (tmp / "train_features.npy").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["train_features.npy"]
    assert leftovers(tmp_path) == []


def test_stale_leftovers_of_killed_runs_are_cleared(tmp_path):
    (tmp_path / ".features.tmp-99999").mkdir()
    (tmp_path / ".features.tmp-99999" / "train_features.npy").write_bytes(b"half")
    (tmp_path / ".features.tmp-12345.npy").write_bytes(b"half")
    (tmp_path / ".other.tmp-1").write_bytes(b"not ours")
    with atomic_path(tmp_path / "features", directory=True) as tmp:
        assert leftovers(tmp_path) == sorted([".other.tmp-1", tmp.name])
        assert tmp.name == f".features.tmp-{os.getpid()}"
    assert leftovers(tmp_path) == [".other.tmp-1"]
