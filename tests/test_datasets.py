"""Raw dataset storage: encoded images back to back in one file per split, with an index."""
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

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
    with RawWriter(tmp_path, "train") as writer:  # arrival order, e.g. an archive's
        for name, data in images.items():
            writer.add(name, labels[name], data)
    raw = RawSplit(tmp_path, "train")
    assert raw.names == list(images) and raw.labels.tolist() == [1, 0, 0]
    assert [raw.read(i) for i in range(len(raw))] == list(images.values())

    sorted_writer = RawWriter(tmp_path, "test")
    for name, data in images.items():
        sorted_writer.add(name, labels[name], data)
    sorted_writer.close(key=lambda name, label: (label, name))
    raw = RawSplit(tmp_path, "test")
    assert raw.names == ["a/0.png", "a/1.jpg", "b/2.png"]
    assert [raw.read(i) for i in range(3)] == [images[name] for name in raw.names]
    assert [key.tobytes() for key in raw.keys] == \
        [hashlib.sha256(images[name]).digest() for name in raw.names]
    path, offset, length, name = raw.locate(2)
    assert (path, length, name) == (str(tmp_path / "test_images.bin"), len(images["b/2.png"]),
                                    "b/2.png")
    # A few files per split whatever the number of images, the images stored as they came.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{split}_{kind}" for split in ("train", "test")
        for kind in ("images.bin", "spans.npy", "labels.npy", "names.json", "keys.npy"))
    assert (tmp_path / "test_images.bin").stat().st_size == sum(map(len, images.values()))


def test_empty_split_round_trips(tmp_path):
    RawWriter(tmp_path, "test").close()
    raw = RawSplit(tmp_path, "test")
    assert len(raw) == 0 and raw.names == [] and raw.spans.shape == (0, 2)
    assert raw.keys.shape == (0, 32)


def test_missing_raw_split_tells_to_run_earlier_stages(tmp_path):
    with pytest.raises(PipelineError, match="run the earlier stages") as caught:
        RawSplit(tmp_path, "train")
    assert str(tmp_path / "train_images.bin") in str(caught.value)


def test_missing_classes_tells_to_run_earlier_stages(tmp_path):
    with pytest.raises(PipelineError, match="run the earlier stages") as caught:
        read_classes(tmp_path)
    assert str(tmp_path / "classes.json") in str(caught.value)


def test_split_inputs_leaves_the_inputs_on_disk(tmp_path):
    for split, count in (("train", 3), ("validation", 0), ("test", 2)):
        np.save(tmp_path / f"{split}_features.npy", np.full((count, 2), count, np.float16))
        np.save(tmp_path / f"{split}_labels.npy", np.arange(count))
    write_classes(["a", "b", "c"], tmp_path)
    inputs = split_inputs(tmp_path, "features")
    assert inputs["train"][0] == tmp_path / "train_features.npy"
    assert inputs["test"][1].tolist() == [0, 1]
    assert list(inputs) == ["train", "validation", "test"] and len(inputs["validation"][1]) == 0


def test_same_bytes_pairs_test_images_with_the_first_train_image_of_their_bytes(tmp_path):
    with RawWriter(tmp_path, "train") as train:
        for name, data in (("a", b"1"), ("b", b"2"), ("c", b"1")):
            train.add(name, 0, data)
    with RawWriter(tmp_path, "test") as test:
        for name, data in (("x", b"2"), ("y", b"3"), ("z", b"1"), ("w", b"3")):
            test.add(name, 0, data)
    across, within = same_bytes(tmp_path)
    assert across == [("b", "x"), ("a", "z")]
    assert within == {"train": 1, "test": 1}
