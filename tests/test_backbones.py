"""The backbone registry: every entry builds frozen and headless, its preprocessing leaves the
caller's array alone, and bad settings fail with one line naming the param."""
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from keras_bottleneck.params import Backbone
from keras_bottleneck import backbones
from keras_bottleneck.errors import PipelineError
from conftest import REPO_ROOT, SHARED_MOBILENET, needs_shared, subprocess_env


def settings(name, weights="none", alpha=1.0):
    return Backbone(name=name, weights=weights, alpha=alpha)


def assert_one_line(error, *names):
    message = str(error)
    assert "\n" not in message
    for name in names:
        assert name in message


# Building resnet101, densenet121 and inception_v3 takes 3-15 s each on this machine for no
# code path the others do not cover; test_registry_matches_keras still checks their entries.
HEAVY = {"resnet101", "densenet121", "inception_v3"}


@pytest.mark.parametrize("name", list(backbones.REGISTRY))
def test_registry_matches_keras(name):
    """Each constructor exists, takes our arguments, and rejects exactly the sizes below
    min_size (Keras checks the size before building any layer, so this is cheap)."""
    spec = backbones.REGISTRY[name]
    constructor = getattr(keras.applications, spec.constructor)
    kwargs = {"alpha": 1.0} if spec.has_alpha else {}
    below = spec.min_size - 1
    with pytest.raises(ValueError, match=f"at least {spec.min_size}x{spec.min_size}"):
        constructor(include_top=False, weights=None, input_shape=(below, below, 3), **kwargs)
    assert callable(backbones.preprocess_input(name))


@pytest.mark.parametrize("name", sorted(set(backbones.REGISTRY) - HEAVY))
def test_backbone_builds_frozen_without_top_at_its_smallest_size(name):
    size = max(backbones.REGISTRY[name].min_size, 32)
    alpha = 0.25 if name == "mobilenet" else 1.0  # also covers the width multiplier
    model = backbones.build(settings(name, alpha=alpha), size)
    assert model.input_shape == (None, size, size, 3)
    # Without the top the output is a feature map, not class scores.
    assert len(model.output_shape) == 4 and min(model.output_shape[1:]) >= 1
    assert not any(isinstance(layer, keras.layers.Dense) for layer in model.layers)
    assert model.trainable is False
    assert model.trainable_weights == []
    keras.backend.clear_session()


def test_mobilenet_alpha_sets_the_width():
    narrow = backbones.build(settings("mobilenet", alpha=0.25), 32)
    wide = backbones.build(settings("mobilenet", alpha=0.5), 32)
    assert narrow.output_shape[-1] == 256 and wide.output_shape[-1] == 512


@pytest.mark.parametrize("name", list(backbones.REGISTRY))
def test_preprocess_function_leaves_its_input_unchanged(name):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    original = images.copy()
    expected = backbones.preprocess_input(name)(images.copy())

    result = backbones.preprocess_function(name)(images)

    np.testing.assert_array_equal(images, original)
    np.testing.assert_allclose(result, expected, rtol=1e-6)
    assert result.dtype == np.float32
    # uint8 batches (as stored in data/prepared) get the same values.
    np.testing.assert_allclose(backbones.preprocess_function(name)(images.astype(np.uint8)),
                               backbones.preprocess_input(name)(
                                   images.astype(np.uint8).astype(np.float32)), rtol=1e-6)


def test_keras_preprocess_input_modifies_float_arrays_in_place():
    """Why preprocess_function copies: Keras' own function overwrites its argument."""
    images = np.full((1, 4, 4, 3), 200, dtype=np.float32)
    keras.applications.mobilenet.preprocess_input(images)
    assert not np.all(images == 200)


def test_unknown_backbone_is_one_line_naming_the_key():
    with pytest.raises(PipelineError) as error:
        backbones.check(settings("resnet5O"), 64)
    assert_one_line(error.value, "backbone.name", "resnet5O", "resnet50")


def test_img_size_below_the_backbones_minimum_is_one_line_naming_the_key():
    with pytest.raises(PipelineError) as error:
        backbones.check(settings("inception_v3"), 64)
    assert_one_line(error.value, "prepare.img_size", "inception_v3", "75")
    backbones.check(settings("inception_v3"), 75)  # the minimum itself is fine


def test_missing_weights_file_is_one_line_naming_the_key(tmp_path):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(PipelineError) as error:
        backbones.check(settings("resnet50", weights=str(missing)), 64)
    assert_one_line(error.value, "backbone.weights", str(missing))
    missing.touch()
    backbones.check(settings("resnet50", weights=str(missing)), 64)  # an existing file passes


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_weights_file_of_another_model_is_one_line(tmp_path):
    other = tmp_path / "mobilenet_v2.weights.h5"
    keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3),
                                   alpha=0.35).save_weights(other)
    with pytest.raises(PipelineError) as error:
        backbones.build(settings("mobilenet", weights=str(other), alpha=0.25), 32)
    assert_one_line(error.value, "backbone.weights", str(other), "does not fit mobilenet")


@needs_shared(SHARED_MOBILENET)
@pytest.mark.parametrize("name, alpha", [("mobilenet", 1.0), ("resnet50", 1.0)])
def test_shared_mobilenet_weights_do_not_fit_other_backbones(name, alpha):
    with pytest.raises(PipelineError) as error:
        backbones.build(settings(name, weights=str(SHARED_MOBILENET), alpha=alpha), 32)
    assert_one_line(error.value, "backbone.weights", SHARED_MOBILENET.name,
                    f"does not fit {name}")


@needs_shared(SHARED_MOBILENET)
def test_weights_path_loads_the_imagenet_weights():
    keras.utils.set_random_seed(0)
    random = backbones.build(settings("mobilenet", alpha=0.25), 64)
    loaded = backbones.build(settings("mobilenet", weights=str(SHARED_MOBILENET), alpha=0.25), 64)

    with h5py.File(SHARED_MOBILENET, "r") as saved:
        saved_kernel = saved["conv1/conv1/kernel:0"][()]
        saved_variance = saved["conv_pw_13_bn/conv_pw_13_bn/moving_variance:0"][()]
    np.testing.assert_array_equal(loaded.get_layer("conv1").kernel.numpy(), saved_kernel)
    np.testing.assert_array_equal(
        loaded.get_layer("conv_pw_13_bn").moving_variance.numpy(), saved_variance)
    assert not np.array_equal(random.get_layer("conv1").kernel.numpy(), saved_kernel)
    assert loaded.trainable is False


def test_offline_imagenet_weights_name_the_file_and_where_to_put_it(tmp_path):
    """Keras reads KERAS_HOME at import, hence a fresh interpreter; a proxy on a closed port
    makes the download fail the same way with or without a network."""
    keras_home = tmp_path / "empty_keras_home"
    keras_home.mkdir()
    env = subprocess_env(tmp_path)
    env.update(KERAS_HOME=str(keras_home), HTTPS_PROXY="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9", NO_PROXY="", no_proxy="")
    code = ("from keras_bottleneck import backbones; from keras_bottleneck.errors import run_stage; "
            "from keras_bottleneck.params import Backbone; "
            "run_stage(lambda: backbones.build(Backbone('mobilenet_v2', 'imagenet', 1.0), 32))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    file = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert file in errors[0]
    assert str(keras_home / "models") in errors[0]
    assert "backbone.weights" in errors[0]
