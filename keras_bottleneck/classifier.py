"""The exported classifier: RGB uint8 images in, class probabilities out, in one Keras model."""
from pathlib import Path

from .atomic import read_json
from .engines import OpenVINOEngine, TensorFlowEngine, convert, extractor
from .errors import PipelineError
from .heads import takes_pooled

# models/classifier_openvino/: the classifier as an OpenVINO model, and the precision to run it at.
OPENVINO_DIR, OPENVINO_MODEL, OPENVINO_SETTINGS = ("classifier_openvino", "classifier.xml",
                                                   "settings.json")


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
        ov.save_model(convert(model), tmp / OPENVINO_MODEL, compress_to_fp16=False)
        write_json(tmp / OPENVINO_SETTINGS, {"precision": precision})


def classes_beside(model_path):
    return Path(model_path).with_name("classes.json")


def openvino_beside(model_path):
    """Where export writes the OpenVINO model of the classifier at `model_path`."""
    return Path(model_path).with_name(OPENVINO_DIR) / OPENVINO_MODEL


def load_engine(model_path, engine, batch_size):
    """(an engine running the exported classifier at `model_path` in batches of `batch_size`,
    its image side, class names): engine "openvino", the OpenVINO model export wrote beside
    it, at the precision extract ran; "tensorflow", the Keras model itself."""
    if engine == "tensorflow":
        model, classes = load(model_path)
        return TensorFlowEngine(model, batch_size), model.input_shape[1], classes
    path = openvino_beside(model_path)
    if not path.is_file():
        raise PipelineError(f"{path} does not exist: run `dvc repro export` to write it, or "
                            "pass --engine tensorflow")
    classes = _classes(model_path)
    settings = read_json(path.with_name(OPENVINO_SETTINGS))
    running = OpenVINOEngine(path, batch_size, settings["precision"])
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
    classes = _classes(model_path)
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or model.output_shape[-1] != len(classes):
        raise PipelineError(f"{model_path} is not an exported classifier (input {shape}, output "
                            f"{model.output_shape}, {len(classes)} classes in {classes_path})")
    return model, classes
