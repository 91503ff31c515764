"""The exported classifier: RGB uint8 images in, class probabilities out, in one Keras model."""
import json
from pathlib import Path

from . import backbones
from .errors import PipelineError


def build(backbone, backbone_name, head, feature_dtype):
    """image (uint8) -> the backbone's own preprocess_input -> frozen backbone -> features
    rounded to `feature_dtype` as extract stored them -> head. The head was trained and scored
    on stored (float16 by default) features, so the classifier rounds them the same way and
    gives the predictions behind the head's recorded test accuracy. Built from Keras layers
    and ops only: it loads with plain keras.models.load_model, without this project's code."""
    import keras
    inputs = keras.Input(backbone.input_shape[1:], dtype="uint8", name="image")
    x = backbones.preprocess_input(backbone_name)(keras.ops.cast(inputs, "float32"))
    features = backbone(x, training=False)
    if feature_dtype != "float32":
        features = keras.layers.Identity(dtype=feature_dtype, name="as_stored")(features)
    return keras.Model(inputs, head(features), name="classifier")


def save(model, classes, model_path, classes_path, saved_model_path):
    """The .keras file, the class names beside it, and a TensorFlow SavedModel (for TF Serving
    and the TFLite converter), each written whole or not at all."""
    from .atomic import atomic_path, write_json
    with atomic_path(model_path) as tmp:
        model.save(tmp)
    write_json(classes_path, list(classes))
    with atomic_path(saved_model_path, directory=True) as tmp:
        tmp.rmdir()  # model.export creates the directory itself
        model.export(str(tmp), verbose=False)


def classes_beside(model_path):
    return Path(model_path).with_name("classes.json")


def load(model_path):
    """(model, class names) of an exported classifier; one PipelineError if it is not one."""
    import keras
    model_path, classes_path = Path(model_path), classes_beside(model_path)
    if not model_path.is_file():
        raise PipelineError(f"{model_path} does not exist: run `dvc repro export` first, or "
                            "pass --model the path of an exported classifier.keras")
    try:
        model = keras.models.load_model(model_path)
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds on a bad file
        reason = " ".join(str(error).split()).split(". ")[0][:200]
        raise PipelineError(f"{model_path} is not a Keras model ({reason}): pass --model the "
                            "classifier.keras that `dvc repro export` writes") from None
    if not classes_path.is_file():
        raise PipelineError(f"{classes_path} is missing: it is written beside the model by "
                            "`dvc repro export`; copy it along with the model")
    classes = json.loads(classes_path.read_text())
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or model.output_shape[-1] != len(classes):
        raise PipelineError(f"{model_path} is not an exported classifier (input {shape}, output "
                            f"{model.output_shape}, {len(classes)} classes in {classes_path})")
    return model, classes
