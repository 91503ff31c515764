"""preprocess's pieces: which images are chosen, how they are resized and the first look."""
import io

import numpy as np
import pytest
from PIL import Image

from keras_bottleneck import storage
from keras_bottleneck.datasets import RawSplit, RawWriter
from keras_bottleneck.errors import PipelineError
from keras_bottleneck.images import resize
from keras_bottleneck.prepare import (first_images_of_each_class, first_look, hold_out, select,
                                      write_resized)

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


def prepared(directory, raw, indices, writer_earlier=None, decode=True):
    """Rows of images `indices` of `raw` written by write_resized into a store in `directory`:
    (how many were decoded, the stored rows)."""
    writer = storage.Writer(directory, storage.ARRAY, writer_earlier, (16, 16, 3), np.uint8)
    decoded = write_resized(raw, indices, 16, writer)
    writer.finish({"train": (raw.keys[indices], raw.labels[indices],
                             [raw.names[i] for i in indices])})
    return decoded, storage.read_split(directory, "train").rows[:]


def test_write_resized(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape + (3,), dtype=np.uint8)
              for shape in [(10, 20), (32, 32), (50, 7)]]
    writer = RawWriter(tmp_path / "raw")
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        writer.add("train", f"{i}.png", 0, buffer.getvalue())
    writer.close()
    raw = RawSplit(tmp_path / "raw", "train")

    decoded, written = prepared(tmp_path / "first", raw, [2, 0, 1])
    assert decoded == 3
    assert written.shape == (3, 16, 16, 3) and written.dtype == np.uint8
    for row, index in zip(written, [2, 0, 1]):
        np.testing.assert_array_equal(row, resize(images[index], 16))

    # Rows of an earlier run, found by the source image's key, are reused, not decoded:
    # image 0's row is marked, so that a reused row can be told from a fresh decode.
    marked = storage.Writer(tmp_path / "earlier", storage.ARRAY, None, (16, 16, 3), np.uint8)
    for index, row in zip([2, 0, 1], written):
        marked.add(raw.keys[index].tobytes(), np.full_like(row, 7) if index == 0 else row)
    marked.finish({"train": (raw.keys[[2, 0, 1]], [0, 0, 0], ["2", "0", "1"])})
    listing = {path.relative_to(tmp_path / "earlier").as_posix(): path
               for path in (tmp_path / "earlier").rglob("*") if path.is_file()}
    decoded, again = prepared(tmp_path / "again", raw, [0, 1, 2], storage.Earlier([listing]))
    assert decoded == 0
    np.testing.assert_array_equal(again, np.stack([np.full_like(written[1], 7), written[2],
                                                   written[0]]))


def test_hold_out_draws_validation_out_of_the_chosen_train_images():
    chosen = select(LABELS, 20, stratify=False, shuffle=False, seed=0)
    train, validation = hold_out(LABELS, chosen, 5, stratify=False, seed=1)
    assert len(train) == 15 and len(validation) == 5
    assert sorted(np.concatenate([train, validation]).tolist()) == chosen.tolist()
    assert validation.tolist() != chosen[:5].tolist()  # drawn at random...
    again = hold_out(LABELS, chosen, 5, stratify=False, seed=1)[1]
    assert validation.tolist() == again.tolist()  # ...with the seed


def test_hold_out_stratified_takes_each_class_alike():
    chosen = select(LABELS, 15, stratify=True, shuffle=False, seed=0)  # 5 of each class
    train, validation = hold_out(LABELS, chosen, 6, stratify=True, seed=0)
    assert np.bincount(LABELS[validation], minlength=3).tolist() == [2, 2, 2]
    assert not set(train.tolist()) & set(validation.tolist())


def test_hold_out_of_nothing_keeps_every_train_image():
    chosen = np.arange(7)
    train, validation = hold_out(LABELS, chosen, 0, stratify=True, seed=0)
    assert train.tolist() == chosen.tolist() and len(validation) == 0


def test_hold_out_of_every_train_image_is_refused():
    with pytest.raises(PipelineError, match="prepare.validation_count 7 leaves no train images"):
        hold_out(LABELS, np.arange(7), 7, stratify=False, seed=0)


def test_first_images_of_each_class():
    first = first_images_of_each_class(LABELS, 3)
    assert list(first) == [0, 1, 2]
    assert first[0].tolist() == [0, 1, 2] and first[1].tolist() == [4, 11, 18]


def test_first_look_shows_every_class_in_its_own_row(tmp_path):
    images = {label: [np.full((32, 32, 3), 60 * label + 20 * i, np.uint8) for i in range(count)]
              for label, count in ((0, 4), (1, 2), (2, 3))}
    path = tmp_path / "first_images.png"

    first_look(images, ["cat", "dog", "emu"], path, tile=96)

    with Image.open(path) as picture:
        assert picture.format == "PNG"
        assert picture.size == (120 + 96 * 4, 96 * 3 + 20)
        sheet = np.asarray(picture.convert("RGB"))
    for label, tiles in images.items():
        for i, image in enumerate(tiles):  # each image in its class's row
            assert sheet[label * 96 + 48, 120 + i * 96 + 48, 0] == image[0, 0, 0]
    assert (sheet[40:56, :100] < 128).any()  # a class name is written in the first row
