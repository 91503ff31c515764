"""Raw dataset storage: a few large files per split, images of any size back intact."""
import numpy as np
import pytest

from keras_bottleneck.datasets import (Split, load_arrays, load_raw_split, read_classes, save_raw,
                                 write_classes)
from keras_bottleneck.errors import PipelineError


def random_images(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape + (3,), dtype=np.uint8) for shape in shapes]


def test_mixed_sizes_round_trip(tmp_path):
    train = Split(random_images([(5, 7), (32, 32), (9, 3)]), np.array([2, 0, 1]))
    test = Split(random_images([(1, 1), (64, 40)], seed=1), np.array([1, 1]))

    save_raw({"train": train, "test": test}, ["cat", "dog", "emu"], tmp_path)

    # A handful of files, however many images there are.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["classes.json"] + [f"{split}_{kind}.npy" for split in ("train", "test")
                            for kind in ("pixels", "shapes", "labels")])
    for name, expected in (("train", train), ("test", test)):
        loaded = load_raw_split(tmp_path, name)
        assert len(loaded.images) == len(expected.images)
        for image, original in zip(loaded.images, expected.images):
            assert image.dtype == np.uint8
            np.testing.assert_array_equal(image, original)
        np.testing.assert_array_equal(loaded.labels, expected.labels)
    assert read_classes(tmp_path) == ["cat", "dog", "emu"]


def test_empty_split_round_trips(tmp_path):
    save_raw({"test": Split([], np.zeros(0, np.int64))}, ["a"], tmp_path)
    loaded = load_raw_split(tmp_path, "test")
    assert loaded.images == [] and len(loaded.labels) == 0


def test_missing_classes_tells_to_run_earlier_stages(tmp_path):
    with pytest.raises(PipelineError, match="run the earlier stages") as caught:
        read_classes(tmp_path)
    assert str(tmp_path / "classes.json") in str(caught.value)


def test_load_arrays(tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        np.save(tmp_path / f"{split}_features.npy", np.full((count, 2), count, np.float16))
        np.save(tmp_path / f"{split}_labels.npy", np.arange(count))
    write_classes(["a", "b", "c"], tmp_path)
    arrays = load_arrays(tmp_path, "features")
    assert arrays["train"][0].shape == (3, 2) and arrays["test"][1].tolist() == [0, 1]
    assert (arrays["test"][0] == 2).all()
