"""preprocess's pieces: which images are chosen, how they are resized and the first look."""
import io

import numpy as np
import pytest
from PIL import Image

from keras_bottleneck.datasets import RawSplit, RawWriter
from keras_bottleneck.errors import PipelineError
from keras_bottleneck.images import resize
from keras_bottleneck.prepare import first_look, select, write_resized

# 20 of class 0, 5 of class 1, 10 of class 2, interleaved as a real dataset would be.
LABELS = np.array(([0] * 4 + [1] + [2] * 2) * 5)


def test_default_is_the_first_images():
    np.testing.assert_array_equal(select(LABELS, 7, stratify=False, shuffle=False, seed=0),
                                  np.arange(7))


def test_shuffle_is_seeded():
    chosen = select(LABELS, 10, stratify=False, shuffle=True, seed=3)
    assert len(set(chosen.tolist())) == 10 and (np.diff(chosen) > 0).all()
    np.testing.assert_array_equal(chosen, select(LABELS, 10, False, True, 3))
    assert chosen.tolist() != list(range(10))
    assert chosen.tolist() != select(LABELS, 10, False, True, 4).tolist()


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("count", [10, 11, 15])
def test_stratify_takes_the_same_number_from_each_class(shuffle, count):
    chosen = select(LABELS, count, stratify=True, shuffle=shuffle, seed=0)
    assert len(set(chosen.tolist())) == count
    per_class = np.bincount(LABELS[chosen], minlength=3)
    assert per_class.sum() == count and per_class.max() - per_class.min() <= 1


def test_stratify_without_shuffle_takes_the_first_of_each_class():
    chosen = select(LABELS, 3, stratify=True, shuffle=False, seed=0)
    assert chosen.tolist() == [0, 4, 5]


def test_more_than_there_are_names_the_param():
    with pytest.raises(PipelineError, match="prepare.test_count 36 is more than the 35") as caught:
        select(LABELS, 36, False, False, 0, what="test")
    assert "\n" not in str(caught.value)


def test_stratify_short_class_names_the_param():
    # 18 = 6 per class, but class 1 has only 5.
    with pytest.raises(PipelineError, match="prepare.train_count") as caught:
        select(LABELS, 18, stratify=True, shuffle=False, seed=0)
    assert "class #1" in str(caught.value)


def test_write_resized(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape + (3,), dtype=np.uint8)
              for shape in [(10, 20), (32, 32), (50, 7)]]
    with RawWriter(tmp_path, "train") as writer:
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "PNG")
            writer.add(f"{i}.png", 0, buffer.getvalue())
    path = tmp_path / "train_images.npy"

    write_resized(RawSplit(tmp_path, "train"), [2, 0, 1], 16, path)

    written = np.load(path)
    assert written.shape == (3, 16, 16, 3) and written.dtype == np.uint8
    for row, index in zip(written, [2, 0, 1]):
        np.testing.assert_array_equal(row, resize(images[index], 16))


@pytest.mark.parametrize("count", [3, 8])
def test_first_look_writes_a_png(tmp_path, count):
    images = [np.full((32, 32, 3), 30 * i, np.uint8) for i in range(count)]
    path = tmp_path / "first_images.png"

    first_look(images, np.arange(count) % 2, ["cat", "dog"], path)

    with Image.open(path) as picture:
        assert picture.format == "PNG"
        assert picture.size == (128 * count, 148)
        strip = np.asarray(picture.convert("RGB"))
    # Each tile shows its image below the caption row.
    assert [int(strip[80, 128 * i + 64, 0]) for i in range(count)] == [30 * i for i in range(count)]
    assert (strip[:20] < 128).any()  # the class names are written in black
