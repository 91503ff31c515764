"""Test-time mirroring: a prediction is the mean of the image's and its mirror image's."""
import keras
import numpy as np
import pytest

from keras_bottleneck.params import Backbone
from keras_bottleneck import backbones, engines, mirror, storage
from keras_bottleneck.errors import PipelineError
from keras_bottleneck.testing.stores import extracted
from keras_bottleneck.npy_stream import NpyRows


@pytest.fixture(scope="module")
def image_model():
    """A small model that is not mirror-symmetric: its outputs for an image and its mirror
    image differ, so averaging them shows."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(5, activation="softmax")(keras.layers.Flatten()(x))
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((6, 12, 12, 3)).astype(np.float32)


def test_on_images_averages_the_image_and_its_mirror_image(image_model, images):
    mirrored = images[:, :, ::-1]
    plain, of_mirrored = image_model.predict(images, verbose=0), image_model.predict(
        mirrored, verbose=0)
    assert np.abs(plain - of_mirrored).max() > 1e-3  # the model alone tells them apart

    averaged = mirror.on_images(image_model)

    np.testing.assert_allclose(averaged.predict(images, verbose=0), (plain + of_mirrored) / 2,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(averaged.predict(mirrored, verbose=0),
                               averaged.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    # Shared, not copied: new weights in the model are the averaged model's too.
    kernel = image_model.layers[-1].kernel
    before = kernel.numpy()
    try:
        kernel.assign(np.random.default_rng(1).normal(size=before.shape) * 0.3)
        now = (image_model.predict(images, verbose=0)
               + image_model.predict(mirrored, verbose=0)) / 2
        assert np.abs(now - (plain + of_mirrored) / 2).max() > 1e-3
        np.testing.assert_allclose(averaged.predict(images, verbose=0), now, rtol=1e-5,
                                   atol=1e-6)
    finally:
        kernel.assign(before)


def test_on_images_keeps_a_uint8_input(image_model):
    inputs = keras.Input((12, 12, 3), dtype="uint8")
    model = keras.Model(inputs, image_model(keras.ops.cast(inputs, "float32") / 255))
    averaged = mirror.on_images(model)
    assert averaged.inputs[0].dtype == "uint8"
    image = np.random.default_rng(1).integers(0, 256, (1, 12, 12, 3), dtype=np.uint8)
    expected = (model.predict(image, verbose=0) + model.predict(image[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(averaged.predict(image, verbose=0), expected, rtol=1e-5,
                               atol=1e-6)


def test_on_features_averages_the_head_over_both_inputs():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2, 2, 8))
    head = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(inputs)))
    rng = np.random.default_rng(0)
    features, mirrored = rng.random((4, 2, 2, 8)), rng.random((4, 2, 2, 8))

    averaged = mirror.on_features(head)

    np.testing.assert_allclose(averaged.predict([features, mirrored], verbose=0),
                               (head.predict(features, verbose=0)
                                + head.predict(mirrored, verbose=0)) / 2, rtol=1e-5, atol=1e-6)


def test_mirror_keys_are_their_own_and_repeat():
    keys = np.random.default_rng(0).integers(0, 256, (3, 32), dtype=np.uint8)
    mirrored = mirror.keys(keys)
    assert mirrored.shape == (3, 32) and mirrored.dtype == np.uint8
    assert len({bytes(key) for key in mirrored} | {bytes(key) for key in keys}) == 6
    np.testing.assert_array_equal(mirror.keys(keys), mirrored)
    assert mirror.keys(keys[:0]).shape == (0, 32)


def test_mirrored_rows_extract_as_the_mirror_images_do(tmp_path):
    """The stored mirror features are those of the mirror images, in order."""
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "flipped.npy", images[:, :, ::-1])
    vgg16 = backbones.build(Backbone(name="vgg16", weights="none", alpha=1.0), 32)
    engine = engines.TensorFlowEngine(engines.extractor(vgg16, "vgg16", "none"), 4)
    rows = mirror.MirroredRows(NpyRows(tmp_path / "images.npy"))
    np.testing.assert_array_equal(rows.read(np.array([3, 1])), images[[3, 1], :, ::-1])

    mirrored, _ = extracted(engine, rows, tmp_path / "mirrored", "float32")
    expected, _ = extracted(engine, tmp_path / "flipped.npy", tmp_path / "expected", "float32")
    plain, _ = extracted(engine, tmp_path / "images.npy", tmp_path / "plain", "float32")

    np.testing.assert_array_equal(mirrored, expected)
    assert not np.array_equal(mirrored, plain)


def test_missing_mirror_features_are_one_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="no features of the test split's mirror.*dvc repro"):
        mirror.features(tmp_path, "test")
    writer = storage.Writer(tmp_path, storage.ARRAY, None, (2,), np.float16)
    writer.add(b"k" * 32, np.ones(2))
    writer.finish({"test_mirrored": (np.frombuffer(b"k" * 32, np.uint8).reshape(1, 32), [0],
                                     ["test/a.jpg"])})
    np.testing.assert_array_equal(mirror.features(tmp_path, "test")[:], np.ones((1, 2)))
