"""Feature extraction: the streamed features are exactly the backbone's outputs, in order."""
import numpy as np
import pytest

from keras_bottleneck.params import Backbone
from keras_bottleneck import backbones, engines
from keras_bottleneck.testing.stores import extracted, listing

COUNT, BATCH = 10, 4  # 4 does not divide 10: the last batch is a short one


class Progress:
    def __init__(self):
        self.done = 0

    def update(self, count):
        self.done += count


@pytest.fixture(scope="module")
def resnet50():
    """The default backbone, 2x2 feature map at 64 px; with random weights its outputs are
    still of order 1 to 10 (MobileNet's vanish to 1e-16, which would hide any error)."""
    return backbones.build(Backbone(name="resnet50", weights="none", alpha=1.0), 64)


@pytest.fixture(scope="module")
def engine(resnet50):
    """The TensorFlow engine on it (engines' own tests compare it with OpenVINO's)."""
    return engines.TensorFlowEngine(engines.extractor(resnet50, "resnet50", "none"), BATCH)


@pytest.fixture(scope="module")
def images_and_expected(resnet50, tmp_path_factory):
    """Random images in a .npy, and the backbone's outputs for them the plain Keras way."""
    images = np.random.default_rng(0).integers(0, 256, (COUNT, 64, 64, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("images") / "images.npy"
    np.save(path, images)
    preprocess = backbones.preprocess_function("resnet50")
    expected = resnet50.predict(preprocess(images), batch_size=COUNT, verbose=0)
    assert np.abs(expected).max() > 1  # a meaningful output, not a vanishing one
    return path, expected


def assert_close(features, expected, tolerance):
    """Each image's own features, in order (a shuffled or repeated batch would fail here)."""
    np.testing.assert_allclose(features.astype(np.float32), expected, rtol=tolerance,
                               atol=tolerance * np.abs(expected).max())


def test_extract_writes_the_backbones_outputs_as_float32(engine, images_and_expected,
                                                         tmp_path):
    images_path, expected = images_and_expected
    progress = Progress()

    features, ran = extracted(engine, images_path, tmp_path / "features", "float32",
                              progress=progress)

    assert features.shape == (COUNT, 2, 2, 2048) and ran == COUNT
    assert features.dtype == np.float32
    assert progress.done == COUNT
    assert_close(features, expected, 1e-5)


def test_extract_as_float16_twice_gives_byte_identical_files(engine, images_and_expected,
                                                             tmp_path):
    images_path, expected = images_and_expected
    for run in ("first", "second"):
        features, _ = extracted(engine, images_path, tmp_path / run, "float16")

    first, second = listing(tmp_path / "first"), listing(tmp_path / "second")
    assert first.keys() == second.keys()
    assert all(path.read_bytes() == second[name].read_bytes() for name, path in first.items())
    assert features.dtype == np.float16 and features.shape == (COUNT, 2, 2, 2048)
    assert_close(features, expected, 1e-3)


def test_a_rows_features_do_not_depend_on_its_batch_mates(engine, images_and_expected,
                                                          tmp_path):
    """Every batch runs at one shape (the last padded), so an image's features are the same
    bytes whichever images share its batch: what lets incremental extraction reuse rows."""
    images_path, _ = images_and_expected
    images = np.load(images_path)
    order = np.random.default_rng(1).permutation(COUNT)
    np.save(tmp_path / "shuffled.npy", images[order])
    in_order, _ = extracted(engine, images_path, tmp_path / "in_order", "float32")
    shuffled, _ = extracted(engine, tmp_path / "shuffled.npy", tmp_path / "shuffled", "float32")
    assert np.array_equal(shuffled, in_order[order])  # bit for bit, not merely close


def test_rows_found_in_earlier_features_are_reused_not_computed(engine, images_and_expected,
                                                               tmp_path):
    images_path, _ = images_and_expected
    np.save(tmp_path / "first_six.npy", np.load(images_path)[:6])
    known, _ = extracted(engine, tmp_path / "first_six.npy", tmp_path / "first", "float16")
    progress = Progress()

    features, ran = extracted(engine, images_path, tmp_path / "second", "float16",
                              earlier=[tmp_path / "first"], progress=progress)

    assert ran == COUNT - 6 and progress.done == COUNT
    assert np.array_equal(features[:6], known)
    # The earlier chunk is part of the new output, the very same file.
    assert set(listing(tmp_path / "first")) & set(listing(tmp_path / "second")) >= {
        name for name in listing(tmp_path / "first") if name.startswith("chunks/")}
