"""Registry of keras.applications backbones: how to build each, frozen, and preprocess for it.

The registry itself is plain data so params can be checked without importing TensorFlow.
"""
import importlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import PipelineError


@dataclass(frozen=True)
class BackboneSpec:
    module: str          # submodule of keras.applications holding preprocess_input
    constructor: str     # model constructor in keras.applications
    min_size: int        # smallest input side Keras accepts
    has_alpha: bool = False


REGISTRY = {
    "resnet50": BackboneSpec("resnet50", "ResNet50", 32),
    "resnet101": BackboneSpec("resnet", "ResNet101", 32),
    "vgg16": BackboneSpec("vgg16", "VGG16", 32),
    "densenet121": BackboneSpec("densenet", "DenseNet121", 32),
    "inception_v3": BackboneSpec("inception_v3", "InceptionV3", 75),
    "xception": BackboneSpec("xception", "Xception", 71),
    "mobilenet": BackboneSpec("mobilenet", "MobileNet", 32, has_alpha=True),
    "mobilenet_v2": BackboneSpec("mobilenet_v2", "MobileNetV2", 32, has_alpha=True),
    "efficientnetb0": BackboneSpec("efficientnet", "EfficientNetB0", 32),
}


def check(backbone, img_size):
    """Fail early, without TensorFlow, on a backbone setting that cannot work."""
    name = backbone.name
    if name not in REGISTRY:
        raise PipelineError(f"backbone.name {name!r} is unknown: use one of {', '.join(REGISTRY)}")
    spec = REGISTRY[name]
    if img_size < spec.min_size:
        raise PipelineError(f"prepare.img_size {img_size} is below {name}'s minimum input size "
                            f"{spec.min_size}: set prepare.img_size to {spec.min_size} or more")
    weights = backbone.weights
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise PipelineError(f"backbone.weights {weights!r} is not a file: use imagenet, none, "
                            "or the path of a weights file for this backbone")


def build(backbone, img_size):
    """The frozen backbone (include_top=False) for an img_size x img_size RGB input."""
    import keras
    spec = REGISTRY[backbone.name]
    weights = {"imagenet": "imagenet", "none": None}.get(backbone.weights, backbone.weights)
    kwargs = {"alpha": backbone.alpha} if spec.has_alpha else {}
    try:
        with warnings.catch_warnings():
            # MobileNet's note that ImageNet weights were trained at 224 px, at every other
            # size: the size is the user's choice, and the note buried the stage's output.
            warnings.filterwarnings("ignore", "`input_shape` is undefined or non-square",
                                    UserWarning)
            model = getattr(keras.applications, spec.constructor)(
                include_top=False, weights=weights, input_shape=(img_size, img_size, 3),
                **kwargs)
    except Exception as error:  # Keras raises bare Exception on failed downloads
        raise PipelineError(_explain_build_error(backbone, error)) from None
    model.trainable = False
    return model


def build_for_extraction(backbone, img_size, precision="float32"):
    """The backbone as extract runs it. `weights: none` means random weights: seeded, so that
    every run (and export, which must rebuild the very same backbone) gets the same bytes. A
    constant, not train.seed, so that changing train.seed does not re-extract; train_frozen
    seeds with train.seed (default 0) before the same build, so at the default both branches
    get the same random backbone. On a GPU, `precision` bfloat16 builds it under Keras'
    mixed_bfloat16 policy (on a CPU the engine chooses the precision: see engines)."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(0)
    if not (precision == "bfloat16" and tf.config.list_physical_devices("GPU")):
        return build(backbone, img_size)
    # Layers take the global policy when built; it is restored at once, so that nothing built
    # later in the process computes in bfloat16.
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        return build(backbone, img_size)
    finally:
        keras.mixed_precision.set_global_policy(before)


def _explain_build_error(backbone, error):
    message = " ".join(str(error).split())
    url = re.search(r"https?://\S+?\.h5", message)
    if backbone.weights == "imagenet" and url:
        file = url.group(0).rsplit("/", 1)[-1]
        return (f"cannot download the ImageNet weights of {backbone.name} ({url.group(0)}): "
                f"put {file} in {_keras_models_dir()}/ or set backbone.weights to its path")
    if backbone.weights not in ("imagenet", "none"):
        return (f"backbone.weights {backbone.weights} does not fit {backbone.name} "
                f"(alpha {backbone.alpha}): {message[:300]}")
    return f"cannot build backbone {backbone.name}: {message[:300]}"


def _keras_models_dir():
    """Where Keras looks for downloaded weights: $KERAS_HOME/models, else ~/.keras/models
    (keras.config has no public accessor for it)."""
    return os.path.join(os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"), "models")


def preprocess_input(name):
    """The backbone's own keras preprocess_input (works on tensors and arrays)."""
    return importlib.import_module(f"keras.applications.{REGISTRY[name].module}").preprocess_input


def preprocess_function(name):
    """preprocess_input for numpy batches, applied to a float32 copy: Keras' version modifies
    float arrays in place."""
    import numpy as np
    preprocess = preprocess_input(name)
    return lambda images: preprocess(np.array(images, dtype=np.float32))


def preprocess_tensor_function(name):
    """preprocess_input for uint8 image tensors in a tf.data pipeline (tensors are immutable,
    so no copy is needed)."""
    import tensorflow as tf
    preprocess = preprocess_input(name)
    return lambda images: preprocess(tf.cast(images, tf.float32))
