"""Raw dataset storage: encoded images as they came, in content-named chunks, with each split's
index in the dataset's order."""
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from keras_bottleneck import storage
from keras_bottleneck.datasets import (RawSplit, RawWriter, read_classes, same_bytes,
                                       split_inputs, write_classes)
from keras_bottleneck.errors import PipelineError


def encoded(shape, seed, format="PNG"):
    pixels = np.random.default_rng(seed).integers(0, 256, shape + (3,), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format)
    return buffer.getvalue()


def test_bytes_come_back_as_written_in_the_chosen_order(tmp_path):
    images = {"b/2.png": encoded((5, 7), 0), "a/1.jpg": encoded((64, 40), 1, "JPEG"),
              "a/0.png": encoded((1, 1), 2)}
    labels = {"b/2.png": 1, "a/1.jpg": 0, "a/0.png": 0}
    writer = RawWriter(tmp_path / "arrival")  # arrival order, e.g. an archive's
    for name, data in images.items():
        writer.add("train", name, labels[name], data)
    writer.close()
    raw = RawSplit(tmp_path / "arrival", "train")
    assert raw.names == list(images) and raw.labels.tolist() == [1, 0, 0]
    assert [raw.read(i) for i in range(len(raw))] == list(images.values())

    writer = RawWriter(tmp_path / "sorted")
    for name, data in images.items():
        writer.add("test", name, labels[name], data)
    writer.close(order=lambda name: (labels[name], name))
    raw = RawSplit(tmp_path / "sorted", "test")
    assert raw.names == ["a/0.png", "a/1.jpg", "b/2.png"]
    assert [raw.read(i) for i in range(3)] == [images[name] for name in raw.names]
    assert [key.tobytes() for key in raw.keys] == \
        [hashlib.sha256(images[name]).digest() for name in raw.names]
    path, offset, length, name = raw.locate(2)
    assert (length, name) == (len(images["b/2.png"]), "b/2.png")
    assert path.startswith(str(tmp_path / "sorted" / storage.CHUNKS))
    # The images stored as they came, once, whatever the order of the index.
    assert storage.data_bytes(tmp_path / "sorted") == sum(map(len, images.values()))


def test_empty_split_round_trips(tmp_path):
    RawWriter(tmp_path).close()
    raw = RawSplit(tmp_path, "test")
    assert len(raw) == 0 and raw.names == []
    assert raw.keys.shape == (0, 32)


def test_missing_raw_split_tells_to_run_earlier_stages(tmp_path):
    with pytest.raises(PipelineError, match="run the earlier stages") as caught:
        RawSplit(tmp_path, "train")
    assert str(tmp_path / "train_chunks.json") in str(caught.value)


def test_missing_classes_tells_to_run_earlier_stages(tmp_path):
    with pytest.raises(PipelineError, match="run the earlier stages") as caught:
        read_classes(tmp_path)
    assert str(tmp_path / "classes.json") in str(caught.value)


def test_split_inputs_leaves_the_inputs_on_disk(tmp_path):
    writer = storage.Writer(tmp_path, storage.ARRAY, None, (2,), np.float16)
    splits = {}
    for split, count in (("train", 3), ("validation", 0), ("test", 2)):
        keys = [bytes([len(splits), i]) * 16 for i in range(count)]
        for i, key in enumerate(keys):
            writer.add(key, np.full(2, i))
        splits[split] = (np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 32),
                         np.arange(count), [f"{split}/{i}" for i in range(count)])
    writer.finish(splits)
    write_classes(["a", "b", "c"], tmp_path)
    inputs = split_inputs(tmp_path)
    rows, labels = inputs["test"]
    assert isinstance(rows, storage.Rows) and rows.shape == (2, 2)
    np.testing.assert_array_equal(rows[:], [[0, 0], [1, 1]])
    assert labels.tolist() == [0, 1]
    assert list(inputs) == ["train", "validation", "test"] and len(inputs["validation"][1]) == 0


def test_same_bytes_pairs_test_images_with_the_first_train_image_of_their_bytes(tmp_path):
    writer = RawWriter(tmp_path)
    for name, data in (("a", b"1"), ("b", b"2"), ("c", b"1")):
        writer.add("train", name, 0, data)
    for name, data in (("x", b"2"), ("y", b"3"), ("z", b"1"), ("w", b"3")):
        writer.add("test", name, 0, data)
    writer.close()
    across, within = same_bytes(tmp_path)
    assert across == [("b", "x"), ("a", "z")]
    assert within == {"train": 1, "test": 1}
