"""The engines of extract: OpenVINO runs the very extractor Keras builds, converted once; its
features agree with TensorFlow's, are the same bytes run after run and whatever the batch-mates,
and the fingerprint tells engines and precisions apart."""
import numpy as np
import pytest

from keras_bottleneck import engines
from keras_bottleneck.errors import PipelineError
from keras_bottleneck.features import extract

COUNT, SIZE = 10, 64  # batches of 4: the last one is padded
PARAMS = {"backbone": {"name": "resnet50", "weights": "none", "alpha": 1.0},
          "prepare": {"img_size": SIZE},
          "extract": {"engine": "openvino", "precision": "float32", "pool": "none",
                      "batch_size": 4, "dtype": "float32"}}


def params_with(**extract):
    return {**PARAMS, "extract": {**PARAMS["extract"], **extract}}


@pytest.fixture(scope="module")
def backbone_dirs(tmp_path_factory):
    """models/backbone/ as the backbone stage writes it, per engine and pooling."""
    dirs = {}
    for engine, pool in (("openvino", "none"), ("tensorflow", "none"), ("openvino", "avg")):
        dirs[engine, pool] = tmp_path_factory.mktemp(f"{engine}_{pool}")
        engines.write_backbone(params_with(engine=engine, pool=pool), dirs[engine, pool])
    return dirs


def load(backbone_dirs, **extract):
    params = params_with(**extract)
    chosen = params["extract"]
    return engines.load(backbone_dirs[chosen["engine"], chosen["pool"]], params, SIZE)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "images.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (COUNT, SIZE, SIZE, 3), np.uint8))
    return path


def features(engine, images, path):
    extract(engine, images, path, "float32")
    return np.load(path)


def test_the_openvino_engine_runs_a_converted_model(backbone_dirs):
    assert (backbone_dirs["openvino", "none"] / engines.OPENVINO_MODEL).is_file()
    assert not (backbone_dirs["tensorflow", "none"] / engines.OPENVINO_MODEL).exists()
    engine = load(backbone_dirs)
    assert isinstance(engine, engines.OpenVINOEngine) and engine.output_shape == (2, 2, 2048)
    assert engine.jobs >= 1


def test_openvino_float32_features_agree_with_tensorflows(backbone_dirs, images, tmp_path):
    by_openvino = features(load(backbone_dirs), images, tmp_path / "openvino.npy")
    by_tensorflow = features(load(backbone_dirs, engine="tensorflow"), images,
                             tmp_path / "tensorflow.npy")
    scale = np.abs(by_tensorflow).max()
    assert scale > 1  # meaningful features, not vanishing ones
    assert np.abs(by_openvino - by_tensorflow).max() <= 1e-3 * scale
    # Each image's own row, in order: a shuffled or repeated batch would fail here.
    assert not np.allclose(by_openvino[0], by_openvino[1])


def test_openvino_bfloat16_features_agree_within_bfloat16s_precision(backbone_dirs, images,
                                                                      tmp_path):
    exact = features(load(backbone_dirs), images, tmp_path / "float32.npy")
    rounded = features(load(backbone_dirs, precision="bfloat16"), images, tmp_path / "bf16.npy")
    # bfloat16 keeps 8 bits of mantissa (0.4 %); through ResNet50 errors add up to about 1 %.
    assert np.abs(rounded - exact).max() <= 3e-2 * np.abs(exact).max()


@pytest.mark.parametrize("engine", ["openvino", "tensorflow"])
def test_rows_are_the_same_bytes_run_after_run_and_whatever_the_batch_mates(
        engine, backbone_dirs, images, tmp_path):
    running = load(backbone_dirs, engine=engine)
    first = features(running, images, tmp_path / "first.npy")
    again = features(load(backbone_dirs, engine=engine), images, tmp_path / "again.npy")
    assert (tmp_path / "first.npy").read_bytes() == (tmp_path / "again.npy").read_bytes()
    order = np.random.default_rng(1).permutation(COUNT)
    np.save(tmp_path / "shuffled.npy", np.load(images)[order])
    shuffled = features(running, tmp_path / "shuffled.npy", tmp_path / "shuffled_features.npy")
    assert np.array_equal(shuffled, first[order])
    assert np.array_equal(again, first)


def test_pooled_features_are_the_feature_maps_mean(backbone_dirs, images, tmp_path):
    maps = features(load(backbone_dirs), images, tmp_path / "maps.npy")
    pooled = features(load(backbone_dirs, pool="avg"), images, tmp_path / "pooled.npy")
    assert pooled.shape == (COUNT, 2048)
    np.testing.assert_allclose(pooled, maps.mean(axis=(1, 2)), rtol=1e-4,
                               atol=1e-5 * np.abs(maps).max())


def test_the_fingerprint_differs_per_engine_and_precision(backbone_dirs):
    prints = [engines.fingerprint(load(backbone_dirs, **settings), params_with(**settings)
                                  ["extract"])
              for settings in ({}, {"precision": "bfloat16"}, {"engine": "tensorflow"},
                               {"engine": "tensorflow", "precision": "bfloat16"},
                               {"pool": "avg"})]
    assert len({repr(sorted(found.items())) for found in prints}) == len(prints)
    assert "native_bfloat16" in prints[1] and "native_bfloat16" not in prints[0]


def test_a_backbone_made_for_other_params_is_refused_in_one_line(backbone_dirs):
    with pytest.raises(PipelineError) as caught:
        engines.load(backbone_dirs["openvino", "none"], params_with(), SIZE + 32)
    assert "img_size" in str(caught.value) and "dvc repro" in str(caught.value)
    with pytest.raises(PipelineError, match="pool"):
        engines.load(backbone_dirs["openvino", "none"], params_with(pool="avg"), SIZE)
    with pytest.raises(PipelineError, match="backbone.json is missing"):
        engines.load(backbone_dirs["openvino", "none"] / "nowhere", params_with(), SIZE)


def test_bfloat16_on_a_gpu_is_kerass_mixed_bfloat16_policy(tmp_path):
    import tensorflow as tf
    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("no GPU on this machine: extract.precision bfloat16 on a GPU is Keras' "
                    "mixed_bfloat16 policy, checked where one is")
    import keras
    engines.write_backbone(params_with(engine="tensorflow"), tmp_path)
    try:
        engine = engines.load(tmp_path, params_with(engine="tensorflow", precision="bfloat16"),
                              SIZE)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert engine.runtime["device"] == "GPU"
    finally:
        keras.mixed_precision.set_global_policy("float32")
