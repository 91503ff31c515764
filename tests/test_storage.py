"""Rows in content-named chunks: read back in the dataset's order, earlier chunks kept as the
very same files when rows are added, mostly-dead chunks rewritten when rows go, the same bytes
from the same history, the single-file layout's rows reused, damage named in one line."""
import gzip
import json

import numpy as np
import pytest

from keras_bottleneck import storage
from keras_bottleneck.errors import PipelineError

SHAPE = (4, 4, 3)


def key(i):
    return np.frombuffer(i.to_bytes(32, "big"), np.uint8)


def row(i):
    return np.full(SHAPE, i % 251, np.uint8)


def files_of(directory):
    """A version as incremental hands it over: {relative name: path}."""
    return {path.relative_to(directory).as_posix(): path
            for path in sorted(directory.rglob("*")) if path.is_file()}


def write(directory, splits, earlier=(), computed=None, kind=storage.ARRAY):
    """Write {split: [image numbers]} as a stage does: rows only an earlier version lacks are
    added (counted in `computed`), then the index. Returns the Writer."""
    writer = storage.Writer(directory, kind, storage.Earlier([files_of(e) for e in earlier]),
                            SHAPE, np.uint8)
    for numbers in splits.values():
        for i in numbers:
            if writer.needs(key(i).tobytes()):
                writer.add(key(i).tobytes(), row(i) if kind == storage.ARRAY
                           else f"image {i}".encode() * (i % 5 + 1))
                if computed is not None:
                    computed.append(i)
    writer.finish({split: (np.array([key(i) for i in numbers], np.uint8).reshape(-1, 32),
                           [i % 3 for i in numbers], [f"{split}/{i}.jpg" for i in numbers])
                   for split, numbers in splits.items()})
    return writer


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(storage, "CHUNK_BYTES", 10 * row(0).nbytes)  # 10 rows a chunk


def chunk_files(directory):
    return {path.name: path.read_bytes() for path in (directory / storage.CHUNKS).iterdir()}


def test_rows_labels_names_and_keys_come_back_in_the_datasets_order(tmp_path):
    numbers = [7, 3, 25, 3, 11] + list(range(40, 60))
    write(tmp_path / "out", {"train": numbers, "test": [99, 7]})
    split = storage.read_split(tmp_path / "out", "train")
    assert len(split) == len(split.rows) == len(numbers)
    np.testing.assert_array_equal(split.rows[:], np.stack([row(i) for i in numbers]))
    np.testing.assert_array_equal(split.rows[[4, 0]], np.stack([row(11), row(7)]))
    np.testing.assert_array_equal(split.rows[2], row(25))
    assert split.rows.shape == (len(numbers),) + SHAPE and split.rows.dtype == np.uint8
    assert list(split.labels) == [i % 3 for i in numbers]
    assert split.names == [f"train/{i}.jpg" for i in numbers]
    np.testing.assert_array_equal(split.keys, np.stack([key(i) for i in numbers]))
    test = storage.read_split(tmp_path / "out", "test")
    np.testing.assert_array_equal(test.rows[:], np.stack([row(99), row(7)]))
    # Rows repeated across splits or within one are stored once.
    stored = sum(len(np.load(path)) for path in (tmp_path / "out" / storage.CHUNKS).glob(
        "*.keys.npy"))
    assert stored == len(set(numbers) | {99})


def test_adding_rows_keeps_every_earlier_chunk_and_writes_only_the_new_rows(tmp_path):
    first = list(range(100))
    write(tmp_path / "v1", {"train": first})
    computed = []
    added = sorted(first + [1000, 1001, 1002])
    write(tmp_path / "v2", {"train": added}, earlier=[tmp_path / "v1"], computed=computed)
    assert computed == [1000, 1001, 1002]
    before, after = chunk_files(tmp_path / "v1"), chunk_files(tmp_path / "v2")
    assert set(before) <= set(after)
    assert all(after[name] == data for name, data in before.items())
    new = {name: data for name, data in after.items() if name not in before}
    assert sum(len(np.load(tmp_path / "v2" / storage.CHUNKS / name)) for name in new
               if name.endswith(".keys.npy")) == 3
    # The same rows as a run from scratch, in the dataset's order.
    write(tmp_path / "scratch", {"train": added})
    np.testing.assert_array_equal(storage.read_split(tmp_path / "v2", "train").rows[:],
                                  storage.read_split(tmp_path / "scratch", "train").rows[:])
    # Kept chunks are linked, not rewritten.
    name = next(iter(before))
    assert (tmp_path / "v2" / storage.CHUNKS / name).stat().st_ino == \
        (tmp_path / "v1" / storage.CHUNKS / name).stat().st_ino


def test_the_same_history_gives_the_same_bytes(tmp_path):
    write(tmp_path / "v1", {"train": list(range(30)), "test": [50, 51]})
    for run in ("a", "b"):
        write(tmp_path / run, {"train": list(range(35)), "test": [50, 52]},
              earlier=[tmp_path / "v1"])
    assert files_of(tmp_path / "a").keys() == files_of(tmp_path / "b").keys()
    for name, path in files_of(tmp_path / "a").items():
        assert path.read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_mostly_dead_chunks_are_rewritten_and_disk_stays_within_one_and_a_half_times(tmp_path):
    write(tmp_path / "v1", {"train": list(range(100))})
    # Every other row of the first 50 gone (those chunks half dead), the rest all there.
    kept = [i for i in range(100) if i >= 50 or i % 2]
    computed = []
    write(tmp_path / "v2", {"train": kept}, earlier=[tmp_path / "v1"], computed=computed)
    assert computed == []  # rewritten rows are copied, not computed again
    before, after = chunk_files(tmp_path / "v1"), chunk_files(tmp_path / "v2")
    chunks = [name for name in after if name.endswith(".npy") and ".keys" not in name]
    for name in chunks:
        rows = len(np.load(tmp_path / "v2" / storage.CHUNKS / name))
        live = sum(1 for i in kept if key(i).tobytes() in
                   {k.tobytes() for k in np.load(tmp_path / "v2" / storage.CHUNKS /
                                                 name.replace(".npy", ".keys.npy"))})
        assert live >= storage.KEEP_SHARE * rows
    stored = sum(len(np.load(tmp_path / "v2" / storage.CHUNKS / name)) for name in chunks)
    assert stored <= 1.5 * len(kept)
    assert len(set(before) & set(after)) >= 5 * 2  # the five untouched chunks stay as they were
    np.testing.assert_array_equal(storage.read_split(tmp_path / "v2", "train").rows[:],
                                  np.stack([row(i) for i in kept]))


def test_encoded_images_are_stored_and_read_as_bytes(tmp_path):
    write(tmp_path / "v1", {"train": [1, 2, 3]}, kind=storage.BYTES)
    computed = []
    write(tmp_path / "v2", {"train": [1, 2, 3, 4]}, earlier=[tmp_path / "v1"],
          computed=computed, kind=storage.BYTES)
    assert computed == [4]
    split = storage.read_split(tmp_path / "v2", "train")
    assert [split.read(i) for i in range(4)] == [f"image {i}".encode() * (i % 5 + 1)
                                                for i in (1, 2, 3, 4)]
    path, offset, length, name = split.locate(3)
    assert name == "train/4.jpg" and length == len(b"image 4" * 5)


def test_rows_of_the_single_file_layout_are_reused_not_computed(tmp_path):
    """keras-bottleneck 0.4 wrote one <split>_features.npy and <split>_keys.npy a split."""
    old = tmp_path / "old"
    old.mkdir()
    np.save(old / "train_features.npy", np.stack([row(i) for i in range(20)]))
    np.save(old / "train_keys.npy", np.stack([key(i) for i in range(20)]))
    computed = []
    write(tmp_path / "new", {"train": list(range(22))}, earlier=[old], computed=computed)
    assert computed == [20, 21]
    np.testing.assert_array_equal(storage.read_split(tmp_path / "new", "train").rows[:],
                                  np.stack([row(i) for i in range(22)]))


def test_raw_images_of_the_single_file_layout_are_reused(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    images = [f"photo {i}".encode() for i in range(3)]
    (old / "train_images.bin").write_bytes(b"".join(images))
    lengths = np.array([len(image) for image in images])
    np.save(old / "train_spans.npy", np.stack([np.cumsum(lengths) - lengths, lengths], 1))
    np.save(old / "train_keys.npy", np.stack([key(i) for i in range(3)]))
    earlier = storage.Earlier([files_of(old)])
    writer = storage.Writer(tmp_path / "new", storage.BYTES, earlier)
    assert not any(writer.needs(key(i).tobytes()) for i in range(3))
    writer.finish({"train": (np.stack([key(i) for i in (2, 0)]), [0, 1], ["b", "a"])})
    split = storage.read_split(tmp_path / "new", "train")
    assert [split.read(0), split.read(1)] == [images[2], images[0]]


@pytest.mark.parametrize("damage", ["missing chunk", "chunk cut short", "index past a chunk",
                                    "names not gzip"])
def test_damage_is_one_line_naming_the_file_and_the_fix(tmp_path, damage):
    directory = tmp_path / "out"
    write(directory, {"train": list(range(15))})
    chunk = sorted(p for p in (directory / storage.CHUNKS).glob("*.npy")
                   if ".keys" not in p.name)[0]
    if damage == "missing chunk":
        chunk.unlink()
    elif damage == "chunk cut short":
        chunk.write_bytes(chunk.read_bytes()[:-10])
    elif damage == "index past a chunk":
        index = np.load(directory / "train_index.npy")
        index["row"][0] = 999
        np.save(directory / "train_index.npy", index)
    else:
        (directory / "train_names.json.gz").write_text("[]")
    with pytest.raises(PipelineError) as caught:
        storage.read_split(directory, "train").rows[:]
    message = str(caught.value)
    assert "damaged" in message and "\n" not in message
    assert ("restore" in message or "dvc checkout" in message)


def test_the_index_rewritten_each_run_is_a_few_bytes_an_image(tmp_path):
    numbers = list(range(2000))
    write(tmp_path / "out", {"train": numbers})
    index_bytes = sum(path.stat().st_size for path in (tmp_path / "out").glob("train_*"))
    assert index_bytes / len(numbers) < 20
    names = json.loads(gzip.decompress((tmp_path / "out" / "train_names.json.gz").read_bytes()))
    assert names[:2] == ["train/0.jpg", "train/1.jpg"]
