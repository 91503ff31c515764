"""The engines of extract: OpenVINO runs the very extractor Keras builds, converted once; its
features agree with TensorFlow's, are the same bytes run after run and whatever the batch-mates,
and the fingerprint tells engines and precisions apart."""
from dataclasses import replace

import numpy as np
import pytest

from keras_bottleneck import engines, params
from keras_bottleneck.errors import PipelineError
from keras_bottleneck.testing.stores import extracted, listing

COUNT, SIZE = 10, 64  # batches of 4: the last one is padded
BACKBONE = params.section("backbone", {"name": "resnet50", "weights": "none"})
EXTRACT = params.section("extract", {"batch_size": 4, "dtype": "float32"})


def settings(**extract):
    return replace(EXTRACT, **extract)


@pytest.fixture(scope="module")
def backbone_dirs(tmp_path_factory):
    """models/backbone/ as the backbone stage writes it, per engine and pooling."""
    dirs = {}
    for engine, pool in (("openvino", "none"), ("tensorflow", "none"), ("openvino", "avg")):
        dirs[engine, pool] = tmp_path_factory.mktemp(f"{engine}_{pool}")
        engines.write_backbone(BACKBONE, settings(engine=engine, pool=pool), SIZE,
                               dirs[engine, pool])
    return dirs


def load(backbone_dirs, **extract):
    chosen = settings(**extract)
    return engines.load(backbone_dirs[chosen.engine, chosen.pool], BACKBONE, chosen, SIZE)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "images.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (COUNT, SIZE, SIZE, 3), np.uint8))
    return path


def features(engine, images, directory):
    return extracted(engine, images, directory, "float32")[0]


def test_the_openvino_engine_runs_a_converted_model(backbone_dirs):
    assert (backbone_dirs["openvino", "none"] / engines.OPENVINO_MODEL).is_file()
    assert not (backbone_dirs["tensorflow", "none"] / engines.OPENVINO_MODEL).exists()
    engine = load(backbone_dirs)
    assert isinstance(engine, engines.OpenVINOEngine) and engine.output_shape == (2, 2, 2048)
    assert engine.jobs >= 1


def test_openvino_float32_features_agree_with_tensorflows(backbone_dirs, images, tmp_path):
    by_openvino = features(load(backbone_dirs), images, tmp_path / "openvino")
    by_tensorflow = features(load(backbone_dirs, engine="tensorflow"), images,
                             tmp_path / "tensorflow")
    scale = np.abs(by_tensorflow).max()
    assert scale > 1  # meaningful features, not vanishing ones
    assert np.abs(by_openvino - by_tensorflow).max() <= 1e-3 * scale
    # Each image's own row, in order: a shuffled or repeated batch would fail here.
    assert not np.allclose(by_openvino[0], by_openvino[1])


def test_openvino_bfloat16_features_agree_within_bfloat16s_precision(backbone_dirs, images,
                                                                      tmp_path):
    exact = features(load(backbone_dirs), images, tmp_path / "float32")
    rounded = features(load(backbone_dirs, precision="bfloat16"), images, tmp_path / "bf16")
    # bfloat16 keeps 8 bits of mantissa (0.4 %); through ResNet50 errors add up to about 1 %.
    assert np.abs(rounded - exact).max() <= 3e-2 * np.abs(exact).max()


def test_a_bfloat16_engine_leaves_every_other_prediction_of_the_process_in_float32(
        backbone_dirs, images, tmp_path):
    """TensorFlow's bfloat16 switch is process-wide and reaches graphs traced before it: the
    engine may hold it only while its own graph runs. Here, in this very process, a Keras
    model predicts the same bytes before and after a bfloat16 engine ran, as does a copy
    traced after it; the engine itself computes in bfloat16 where the CPU does."""
    import keras
    keras.utils.set_random_seed(0)
    probe = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5, activation="softmax")])
    inputs = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype(np.float32)
    before = probe.predict(inputs, verbose=0)
    exact = features(load(backbone_dirs, engine="tensorflow"), images, tmp_path / "f32")
    rounded = features(load(backbone_dirs, engine="tensorflow", precision="bfloat16"), images,
                       tmp_path / "bf16")
    np.testing.assert_array_equal(probe.predict(inputs, verbose=0), before)
    copy = keras.models.clone_model(probe)
    copy.set_weights(probe.get_weights())
    np.testing.assert_array_equal(copy.predict(inputs, verbose=0), before)
    assert np.abs(rounded - exact).max() <= 3e-2 * np.abs(exact).max()
    if engines.native_bfloat16():  # elsewhere TensorFlow ignores the switch
        assert not np.array_equal(rounded, exact)


@pytest.mark.parametrize("engine", ["openvino", "tensorflow"])
def test_rows_are_the_same_bytes_run_after_run_and_whatever_the_batch_mates(
        engine, backbone_dirs, images, tmp_path):
    running = load(backbone_dirs, engine=engine)
    first = features(running, images, tmp_path / "first")
    again = features(load(backbone_dirs, engine=engine), images, tmp_path / "again")
    assert listing(tmp_path / "first").keys() == listing(tmp_path / "again").keys()
    for name, path in listing(tmp_path / "first").items():
        assert path.read_bytes() == (tmp_path / "again" / name).read_bytes()
    order = np.random.default_rng(1).permutation(COUNT)
    np.save(tmp_path / "shuffled.npy", np.load(images)[order])
    shuffled = features(running, tmp_path / "shuffled.npy", tmp_path / "shuffled_features")
    assert np.array_equal(shuffled, first[order])
    assert np.array_equal(again, first)


def test_pooled_features_are_the_feature_maps_mean(backbone_dirs, images, tmp_path):
    maps = features(load(backbone_dirs), images, tmp_path / "maps")
    pooled = features(load(backbone_dirs, pool="avg"), images, tmp_path / "pooled")
    assert pooled.shape == (COUNT, 2048)
    np.testing.assert_allclose(pooled, maps.mean(axis=(1, 2)), rtol=1e-4,
                               atol=1e-5 * np.abs(maps).max())


def test_the_fingerprint_differs_per_engine_and_precision(backbone_dirs):
    prints = [engines.fingerprint(load(backbone_dirs, **chosen), settings(**chosen))
              for chosen in ({}, {"precision": "bfloat16"}, {"engine": "tensorflow"},
                             {"engine": "tensorflow", "precision": "bfloat16"},
                             {"pool": "avg"})]
    assert len({repr(sorted(found.items())) for found in prints}) == len(prints)
    assert "native_bfloat16" in prints[1] and "native_bfloat16" not in prints[0]


def test_a_backbone_made_for_other_params_is_refused_in_one_line(backbone_dirs):
    with pytest.raises(PipelineError) as caught:
        engines.load(backbone_dirs["openvino", "none"], BACKBONE, EXTRACT, SIZE + 32)
    assert "img_size" in str(caught.value) and "dvc repro" in str(caught.value)
    with pytest.raises(PipelineError, match="pool"):
        engines.load(backbone_dirs["openvino", "none"], BACKBONE, settings(pool="avg"), SIZE)
    with pytest.raises(PipelineError, match="backbone.json is missing"):
        engines.load(backbone_dirs["openvino", "none"] / "nowhere", BACKBONE, EXTRACT, SIZE)


def test_bfloat16_on_a_gpu_is_kerass_mixed_bfloat16_policy(tmp_path):
    import tensorflow as tf
    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("no GPU on this machine: extract.precision bfloat16 on a GPU is Keras' "
                    "mixed_bfloat16 policy, checked where one is")
    import keras
    engines.write_backbone(BACKBONE, settings(engine="tensorflow"), SIZE, tmp_path)
    engine = engines.load(tmp_path, BACKBONE, settings(engine="tensorflow",
                                                       precision="bfloat16"), SIZE)
    assert engine.runtime["device"] == "GPU"
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in engine.model.layers)
    # The policy is the model's alone: what is built later computes as before.
    assert keras.mixed_precision.global_policy().name == "float32"
