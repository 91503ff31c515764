"""Augmented views: different from each other and from the image, reproducible with the seed,
tied to the image rather than to its position, and drawn anew each epoch in training."""
from dataclasses import replace

import numpy as np

from keras_bottleneck import augment, params as params_file, training
from keras_bottleneck.incremental import row_keys
from keras_bottleneck.npy_stream import NpyRows
from keras_bottleneck.testing.synthetic import photo

SETTINGS = params_file.validate({}).augment
COPIES = 3


def write_images(path, count=4, side=48, first_seed=0):
    images = np.stack([photo(side, side, seed) for seed in range(first_seed, first_seed + count)])
    np.save(path, images)
    return images


def cached_views(path, settings=SETTINGS, copies=COPIES):
    rows = NpyRows(path)
    views = augment.CachedViews(rows, row_keys(path), copies, settings)
    return views.read(np.arange(len(views))), views


def test_views_differ_from_each_other_and_from_the_image(tmp_path):
    images = write_images(tmp_path / "images.npy")
    read, _ = cached_views(tmp_path / "images.npy")
    assert read.shape == (len(images) * COPIES,) + images.shape[1:]
    for i, image in enumerate(images):
        views = read[i * COPIES:(i + 1) * COPIES]
        for view in views:
            assert np.abs(view - image).mean() > 5, "a view must not be the image itself"
        for a in range(COPIES):
            for b in range(a + 1, COPIES):
                assert np.abs(views[a] - views[b]).mean() > 5, "two views are the same"


def test_a_view_is_a_crop_of_its_image_resized(tmp_path):
    images = write_images(tmp_path / "images.npy", count=1)
    whole = augment.views(images, np.array([[0, 0, 1, 1]], np.float32))
    assert np.abs(np.asarray(whole) - images).max() < 1e-3  # the full box is the image
    flipped = augment.views(images, np.array([[0, 1, 1, 0]], np.float32))
    assert np.abs(np.asarray(flipped) - images[:, :, ::-1]).max() < 1e-3


def test_views_are_reproducible_and_belong_to_the_image_not_its_position(tmp_path):
    write_images(tmp_path / "images.npy")
    first, _ = cached_views(tmp_path / "images.npy")
    again, _ = cached_views(tmp_path / "images.npy")
    np.testing.assert_array_equal(first, again)
    # The same images in another order, after a new one: each keeps its own views.
    reordered = np.load(tmp_path / "images.npy")[::-1]
    np.save(tmp_path / "other.npy", np.concatenate([write_images(tmp_path / "new.npy", 1, 48, 9),
                                                     reordered]))
    other, _ = cached_views(tmp_path / "other.npy")
    for i in range(4):
        j = 1 + (3 - i)  # where image i went
        np.testing.assert_array_equal(other[j * COPIES:(j + 1) * COPIES],
                                      first[i * COPIES:(i + 1) * COPIES])
    reseeded, _ = cached_views(tmp_path / "images.npy", replace(SETTINGS, seed=1))
    assert np.abs(reseeded - first).mean() > 5


def test_view_keys_follow_the_settings_and_keep_the_first_views_when_copies_grow(tmp_path):
    write_images(tmp_path / "images.npy", count=2)
    keys = row_keys(tmp_path / "images.npy")
    three = augment.view_keys(keys, 3, SETTINGS)
    five = augment.view_keys(keys, 5, SETTINGS)
    assert len({key.tobytes() for key in three}) == 6
    for i in range(2):
        np.testing.assert_array_equal(five[i * 5:i * 5 + 3], three[i * 3:(i + 1) * 3])
    moved = augment.view_keys(keys, 3, replace(SETTINGS, crop_min_area=0.5))
    assert not {key.tobytes() for key in moved} & {key.tobytes() for key in three}


def epochs_of(data, count):
    iterator = iter(data.repeat(count))
    return [np.concatenate([next(iterator)[0].numpy() for _ in range(2)]) for _ in range(count)]


def test_random_view_draws_a_form_of_each_image_anew_every_epoch(tmp_path):
    count, copies = 16, 3
    originals = np.arange(count, dtype=np.float32)[:, None] * 10
    views = originals.repeat(copies, axis=0) + np.tile(np.arange(1, copies + 1), count)[:, None]
    np.save(tmp_path / "originals.npy", originals)
    np.save(tmp_path / "views.npy", views)
    labels = np.arange(count)

    def run():
        sampler = augment.RandomView(tmp_path / "originals.npy", tmp_path / "views.npy", copies)
        data = training.dataset(tmp_path / "originals.npy", labels, 8, shuffle_seed=3,
                                sampler=sampler)
        return epochs_of(data, 3)
    epochs = run()
    for rows in epochs:
        assert sorted((rows[:, 0] // 10).astype(int)) == list(range(count)), "one form each"
    forms = [rows[:, 0] % 10 for rows in epochs]
    assert all(set(f) <= set(range(copies + 1)) for f in forms)
    assert len({tuple(f) for f in forms}) == 3, "the forms shown change from epoch to epoch"
    assert len(set(np.concatenate(forms))) == copies + 1
    for a, b in zip(epochs, run()):  # the same seed, the same epochs
        np.testing.assert_array_equal(a, b)


def test_on_the_fly_views_change_every_epoch_and_repeat_with_the_seed(tmp_path):
    images = write_images(tmp_path / "images.npy")

    def run():
        data = training.dataset(tmp_path / "images.npy", np.zeros(4, int), 2, shuffle_seed=0,
                                sampler=augment.OnTheFly(tmp_path / "images.npy", SETTINGS))
        return epochs_of(data, 2)
    first, second = run()
    assert first.shape == images.shape and first.dtype == np.float32
    assert np.abs(first - second).mean() > 1
    np.testing.assert_array_equal(run()[0], first)
