"""The exported classifier: RGB uint8 images in, class probabilities out, in one Keras model."""
from pathlib import Path

from .atomic import read_json
from .engines import (CLASSIFIER_OPENVINO_MODEL, CLASSIFIER_OPENVINO_SETTINGS, REGISTRY,
                      convert, extractor, load_keras_classifier)
from .errors import PipelineError
from .heads import takes_pooled



def build(backbone, backbone_name, head, feature_dtype):
    """image (uint8) -> the extractor as extract ran it (the backbone's own preprocess_input,
    the frozen backbone, pooled if the head takes pooled features) -> features rounded to
    `feature_dtype` as extract stored them -> head. The head was trained and scored on stored
    (float16 by default) features, so the classifier rounds them the same way and gives the
    predictions behind the head's recorded test accuracy. Built from Keras layers and ops
    only: it loads with plain keras.models.load_model, without this project's code."""
    import keras
    inputs = keras.Input(backbone.input_shape[1:], dtype="uint8", name="image")
    features = extractor(backbone, backbone_name, "avg" if takes_pooled(head) else "none")(
        keras.ops.cast(inputs, "float32"))
    if feature_dtype != "float32":
        features = keras.layers.Identity(dtype=feature_dtype, name="as_stored")(features)
    return keras.Model(inputs, head(features), name="classifier")


def save(model, classes, model_path, classes_path, saved_model_path, openvino_path, precision):
    """The .keras file, the class names beside it, a TensorFlow SavedModel (for TF Serving
    and the TFLite converter) and an OpenVINO model (what `predict` runs by default, at
    extract.precision), each written whole or not at all."""
    import openvino as ov
    from .atomic import atomic_path, write_json
    with atomic_path(model_path) as tmp:
        model.save(tmp)
    write_json(classes_path, list(classes))
    with atomic_path(saved_model_path, directory=True) as tmp:
        tmp.rmdir()  # model.export creates the directory itself
        model.export(str(tmp), verbose=False)
    with atomic_path(openvino_path, directory=True) as tmp:
        ov.save_model(convert(model), tmp / CLASSIFIER_OPENVINO_MODEL, compress_to_fp16=False)
        write_json(tmp / CLASSIFIER_OPENVINO_SETTINGS, {"precision": precision})


def classes_beside(model_path):
    return Path(model_path).with_name("classes.json")


def load_engine(model_path, engine, batch_size):
    """(an engine running the exported classifier at `model_path` in batches of `batch_size`,
    its image side, class names), with the engine of REGISTRY named `engine` (see
    engines.default_classifier_engine for predict's choice)."""
    kind = REGISTRY[engine]
    path = kind.classifier_file(Path(model_path))
    if not path.is_file():
        others = " or ".join(name for name in REGISTRY if name != engine)
        raise PipelineError(f"{path} does not exist: run `dvc repro export` to write it (or "
                            f"pass --model the path of an exported classifier.keras), or pass "
                            f"--engine {others}")
    running = kind.run_classifier(path, batch_size)
    classes = _classes(model_path)
    if running.output_shape != (len(classes),):
        raise PipelineError(f"{path} has {running.output_shape} outputs but there are "
                            f"{len(classes)} classes in {classes_beside(model_path)}: run "
                            "`dvc repro export` again")
    return running, running.input_shape[0], classes


def _classes(model_path):
    classes_path = classes_beside(model_path)
    if not classes_path.is_file():
        raise PipelineError(f"{classes_path} is missing: it is written beside the model by "
                            "`dvc repro export`; copy it along with the model")
    return read_json(classes_path)


def load(model_path):
    """(model, class names) of an exported classifier; one PipelineError if it is not one."""
    model_path, classes_path = Path(model_path), classes_beside(model_path)
    model = load_keras_classifier(model_path)
    classes = _classes(model_path)
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or model.output_shape[-1] != len(classes):
        raise PipelineError(f"{model_path} is not an exported classifier (input {shape}, output "
                            f"{model.output_shape}, {len(classes)} classes in {classes_path})")
    return model, classes
