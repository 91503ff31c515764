"""The inference engines that run the frozen backbone for extract (extract.engine) and the
exported classifier for predict (--engine), and the one registry of them (REGISTRY).

- openvino: the very model Keras builds (preprocess_input, the backbone, the optional pooling),
  converted once by the backbone stage into models/backbone/ (OpenVINO IR), then compiled for
  throughput and fed through one async infer request per stream: extract imports no TensorFlow.
- tensorflow: the Keras model, built in extract and run as one traced tf.function.

Every engine is an `Engine`: it takes batches of float32 pixels (0 to 255, as decoded) at one
fixed batch shape, the last batch padded, so that a row's features do not depend on its
batch-mates, and names in `last_node` the machine that computed its latest output
(remote_engine.RayEngine: a cluster's). extract.precision bfloat16 is OpenVINO's
INFERENCE_PRECISION_HINT bf16, TensorFlow's oneDNN bfloat16 auto-mixed-precision on a CPU (set
around each of its own calls only), and Keras' mixed_bfloat16 policy on a GPU.

The registry is the only place that tells engines apart by name: everything else looks an
engine up in it.
"""
import json
import platform
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from . import backbones
from .checksums import sha256_of
from .atomic import read_json
from .errors import PipelineError, damaged

DESCRIPTION = "backbone.json"
OPENVINO_MODEL = "backbone.xml"
_OPENVINO_PRECISION = {"float32": "f32", "bfloat16": "bf16"}
# Beside an exported models/classifier.keras: the same classifier as an OpenVINO model, and
# the precision to run it at.
CLASSIFIER_OPENVINO_DIR, CLASSIFIER_OPENVINO_MODEL, CLASSIFIER_OPENVINO_SETTINGS = (
    "classifier_openvino", "classifier.xml", "settings.json")


class Engine(Protocol):
    """What every engine provides, on this machine or on a cluster."""
    batch_size: int                  # rows of every batch `outputs` takes
    jobs: int                        # batches it keeps in flight
    input_shape: tuple               # of one row
    output_shape: tuple              # of one row's output
    runtime: dict                    # what computed it (library versions, device): fingerprinted
    description: dict | None         # models/backbone/'s, for extract
    last_node: str                   # the machine that computed the latest output

    def native_bfloat16(self) -> bool:
        """Whether the machine computing computes bfloat16 natively."""

    def outputs(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The output of each batch (float32), in order."""


@dataclass(frozen=True)
class EngineKind:
    """How one engine is written by the backbone stage, loaded by extract, sent to a cluster's
    workers, and how it runs the exported classifier."""
    # (backbone, img_size, pool, directory) -> what it adds to models/backbone/'s description
    write: Callable[..., dict]
    # (directory, backbone, extract, img_size, description) -> Engine, on this machine
    load: Callable[..., Engine]
    # (directory, backbone, extract, img_size, description) -> what a cluster worker builds the
    # engine from, with no file and no network of its own (sent through Ray's object store)
    recipe: Callable[..., dict]
    # (recipe, threads) -> Engine, on a cluster worker (threads: its share of the cores)
    build: Callable[..., Engine]
    # exported models/classifier.keras -> the file this engine runs of it (export writes it)
    classifier_file: Callable[[Path], Path]
    # (that file, batch size) -> Engine running the classifier
    run_classifier: Callable[..., Engine]


def extractor(backbone, backbone_name, pool):
    """float32 images (0..255) -> the backbone's own preprocess_input -> `backbone` (called with
    training=False: BatchNormalization in inference mode) -> global average pooling with
    `pool` avg. One Keras model of Keras layers and ops, so it converts as a whole."""
    import keras
    inputs = keras.Input(backbone.input_shape[1:], dtype="float32", name="image")
    features = backbone(backbones.preprocess_input(backbone_name)(inputs), training=False)
    if pool == "avg":
        features = keras.layers.GlobalAveragePooling2D(name="pooled")(features)
    return keras.Model(inputs, features, name=f"{backbone_name}_extractor")


def keras_extractor(backbone, img_size, pool, precision="float32"):
    """The Keras extractor of params section `backbone` at `img_size`."""
    return extractor(backbones.build_for_extraction(backbone, img_size, precision),
                     backbone.name, pool)


def weights_id(weights):
    """backbone.weights as it identifies the weights: a file by its content."""
    return weights if weights in ("imagenet", "none") else "sha256:" + sha256_of(weights)


def describe(backbone, extract, img_size):
    """What models/backbone/ holds and was made from: the backbone stage's description."""
    return {"format": 1, "engine": extract.engine, "backbone": backbone.name,
            "weights": weights_id(backbone.weights),
            "alpha": backbone.alpha if backbones.REGISTRY[backbone.name].has_alpha else None,
            "img_size": img_size, "pool": extract.pool}


def write_backbone(backbone, extract, img_size, directory):
    """The backbone stage: models/backbone/ as extract.engine runs it, and its description."""
    description = describe(backbone, extract, img_size)
    description.update(REGISTRY[extract.engine].write(backbone, img_size, extract.pool,
                                                      Path(directory)))
    (Path(directory) / DESCRIPTION).write_text(json.dumps(description, indent=1) + "\n")
    return description


def convert(model):
    """A Keras model as an OpenVINO model, through its traced inference graph (dynamic batch)."""
    import openvino as ov
    import tensorflow as tf
    spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), model.inputs[0].dtype)
    forward = tf.function(lambda images: model(images, training=False), input_signature=[spec])
    return ov.convert_model(forward.get_concrete_function())


def read_description(directory):
    path = Path(directory) / DESCRIPTION
    if not path.is_file():
        raise PipelineError(f"{path} is missing: run `dvc repro` (the backbone stage writes it)")
    return read_json(path)


def checked_description(directory, backbone, extract, img_size):
    """models/backbone/'s description, checked against params, so that a model converted for
    other params is never used."""
    description = read_description(directory)
    expected = describe(backbone, extract, img_size)
    stale = [key for key in expected if description.get(key) != expected[key]]
    if stale:
        raise PipelineError(f"{Path(directory)} was made for other params ({', '.join(stale)} "
                            "differ): run `dvc repro` to rebuild it with the backbone stage")
    return description


def load(directory, backbone, extract, img_size):
    """The engine extract runs on this machine, from models/backbone/ and the params sections
    `backbone` and `extract`."""
    description = checked_description(directory, backbone, extract, img_size)
    return REGISTRY[extract.engine].load(Path(directory), backbone, extract, img_size,
                                         description)


def recipe(directory, backbone, extract, img_size):
    """What a cluster worker builds the engine of `load` from (see remote_engine)."""
    description = checked_description(directory, backbone, extract, img_size)
    return {"engine": extract.engine, "batch_size": extract.batch_size,
            "precision": extract.precision, "description": description,
            **REGISTRY[extract.engine].recipe(Path(directory), backbone, extract, img_size,
                                              description)}


def build(recipe, threads=None):
    """On a cluster worker: the engine of a `recipe`."""
    return REGISTRY[recipe["engine"]].build(recipe, threads)


def default_classifier_engine(model_path):
    """The engine predict runs by default: the first of REGISTRY whose model export wrote
    beside `model_path` is there, else the one running `model_path` itself (which then names
    what is missing)."""
    model_path = Path(model_path)
    return next((name for name, kind in REGISTRY.items()
                 if kind.classifier_file(model_path).is_file()),
                next(name for name, kind in REGISTRY.items()
                     if kind.classifier_file(model_path) == model_path))


def native_bfloat16():
    """Whether this CPU computes in bfloat16 natively (AVX512_BF16 or AMX): as OpenVINO's CPU
    plugin reports it. Elsewhere bfloat16 is emulated or ignored, and gives other bytes."""
    import openvino as ov
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def fingerprint(engine, extract):
    """What an image's features depend on besides its pixels: the backbone and how it was
    converted, the engine, its runtime and precision (and, in bfloat16, whether the CPU does it
    natively), the storage type and the batch shape (floating-point results may differ in the
    last bits between batch shapes; every batch is padded to it)."""
    found = {"format": 2, **engine.description, "runtime": engine.runtime,
             "precision": extract.precision, "dtype": extract.dtype,
             "batch_size": extract.batch_size, "numpy": np.__version__,
             "machine": platform.machine()}
    if extract.precision == "bfloat16":
        found["native_bfloat16"] = engine.native_bfloat16()
    return found


class OpenVINOEngine:
    """A converted model compiled for throughput (PERFORMANCE_HINT THROUGHPUT: several
    streams) at one batch shape, fed through as many async infer requests as it has streams:
    called batch after batch, it would reach half the throughput, each call waiting for the
    last."""

    def __init__(self, model_path, batch_size, precision, description=None, threads=None):
        import openvino as ov
        core = ov.Core()
        try:
            model = core.read_model(model_path)
        except RuntimeError as error:  # a .bin cut short, a damaged .xml
            raise damaged(model_path, " ".join(str(error).split())[:200]) from None
        image_shape = [dim.get_length() for dim in list(model.input().get_partial_shape())[1:]]
        model.reshape([batch_size] + image_shape)
        config = {"PERFORMANCE_HINT": "THROUGHPUT",
                  "INFERENCE_PRECISION_HINT": _OPENVINO_PRECISION[precision]}
        if threads:  # a cluster worker's share of its machine's cores
            # Unpinned: each worker would pin its threads to the machine's first cores, and
            # workers sharing a machine would then share those cores.
            config.update({"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False})
        self.compiled = core.compile_model(model, "CPU", config)
        self.batch_size, self.description = batch_size, description
        self.last_node = platform.node()
        self.input_shape = tuple(image_shape)
        self.output_shape = tuple(self.compiled.output(0).get_shape())[1:]
        self.jobs = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.runtime = {"openvino": ov.get_version().split("-")[0]}

    def native_bfloat16(self):
        return native_bfloat16()

    def outputs(self, batches):
        """The outputs of each batch of `batches` (batch_size rows each), in order, with `jobs`
        batches in flight: each request is reused once the oldest in flight is done. No
        completion callbacks: those run Python in OpenVINO's threads, which must then take the
        GIL from a main thread that may be waiting on OpenVINO."""
        idle = deque(self.compiled.create_infer_request() for _ in range(self.jobs))
        in_flight = deque()
        try:
            for batch in batches:
                if not idle:
                    yield _finished(in_flight[0])
                    idle.append(in_flight.popleft())
                request = idle.popleft()
                request.start_async({0: batch})  # copies the batch in
                in_flight.append(request)
            while in_flight:
                yield _finished(in_flight[0])
                in_flight.popleft()
        finally:
            for request in in_flight:  # never free requests still running
                request.wait()


def _finished(request):
    """The output of an infer request, once it is done (a copy: the request reuses it)."""
    request.wait()
    return request.get_output_tensor(0).data.copy()


class TensorFlowEngine:
    """A Keras model as one traced graph (tracing ResNet50 takes seconds: once per process), at
    one batch shape. In bfloat16 on a CPU, TensorFlow's oneDNN auto-mixed-precision is switched
    on around each call of its own graph and back off after it: the switch is process-wide and
    would otherwise turn every later Keras prediction of the process into bfloat16. Its graph
    keeps one optimized instance per setting, so switching costs nothing after the first call."""

    _BFLOAT16 = "auto_mixed_precision_onednn_bfloat16"

    def __init__(self, model, batch_size, precision="float32", description=None):
        import keras
        import tensorflow as tf
        gpu = bool(tf.config.list_physical_devices("GPU"))
        self._options = tf.config.optimizer
        self._bfloat16 = precision == "bfloat16" and not gpu  # on a GPU: the model's policy
        spec = tf.TensorSpec((batch_size,) + tuple(model.input_shape[1:]), model.inputs[0].dtype)
        # jit_compile (XLA) measured no faster on CPU and compiles twice as long.
        self.forward = tf.function(lambda images: model(images, training=False),
                                   input_signature=[spec])
        self.model, self.batch_size, self.description = model, batch_size, description
        self.last_node, self.jobs = platform.node(), 1  # jobs: batches in flight
        self.input_shape = tuple(model.input_shape[1:])
        self.output_shape = tuple(model.output_shape[1:])
        self.runtime = {"tensorflow": tf.__version__, "keras": keras.__version__,
                        "device": "GPU" if gpu else "CPU"}

    def native_bfloat16(self):
        return native_bfloat16()

    def outputs(self, batches):
        for batch in batches:
            yield self._run(batch)

    def _run(self, batch):
        if not self._bfloat16:
            return np.asarray(self.forward(batch), dtype=np.float32)
        before = self._options.get_experimental_options().get(self._BFLOAT16, False)
        self._options.set_experimental_options({self._BFLOAT16: True})
        try:
            return np.asarray(self.forward(batch), dtype=np.float32)
        finally:
            self._options.set_experimental_options({self._BFLOAT16: before})


# openvino: the backbone converted once, its IR shipped whole to cluster workers.

def _write_openvino(backbone, img_size, pool, directory):
    import keras
    import openvino as ov
    import tensorflow as tf
    model = keras_extractor(backbone, img_size, pool)
    ov.save_model(convert(model), directory / OPENVINO_MODEL, compress_to_fp16=False)
    return {"converted_with": {"keras": keras.__version__, "tensorflow": tf.__version__,
                               "openvino": ov.get_version().split("-")[0]}}


def _load_openvino(directory, backbone, extract, img_size, description):
    return OpenVINOEngine(directory / OPENVINO_MODEL, extract.batch_size, extract.precision,
                          description)


def _openvino_recipe(directory, backbone, extract, img_size, description):
    model = directory / OPENVINO_MODEL
    return {"xml": model.read_bytes(), "bin": model.with_suffix(".bin").read_bytes()}


def _build_openvino(recipe, threads):
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / OPENVINO_MODEL
        model.write_bytes(recipe["xml"])
        model.with_suffix(".bin").write_bytes(recipe["bin"])
        return OpenVINOEngine(model, recipe["batch_size"], recipe["precision"],
                              recipe["description"], threads=threads)


def _openvino_classifier_file(model_path):
    return Path(model_path).with_name(CLASSIFIER_OPENVINO_DIR) / CLASSIFIER_OPENVINO_MODEL


def _run_openvino_classifier(path, batch_size):
    settings = read_json(Path(path).with_name(CLASSIFIER_OPENVINO_SETTINGS))
    return OpenVINOEngine(path, batch_size, settings["precision"])


# tensorflow: the Keras extractor built where it runs (seeded: the same weights everywhere);
# a cluster's workers get the weights through the object store (imagenet needs the network).

def _write_tensorflow(backbone, img_size, pool, directory):
    return {}  # extract builds the Keras model itself, seeded, in a second


def _load_tensorflow(directory, backbone, extract, img_size, description):
    return TensorFlowEngine(keras_extractor(backbone, img_size, description["pool"],
                                            extract.precision),
                            extract.batch_size, extract.precision, description)


def _tensorflow_recipe(directory, backbone, extract, img_size, description):
    import dataclasses
    model = keras_extractor(backbone, img_size, description["pool"], extract.precision)
    return {"backbone": dataclasses.replace(backbone, weights="none"), "img_size": img_size,
            "weights": model.get_weights()}


def _build_tensorflow(recipe, threads):
    # No thread limit: TensorFlow's results depend on its thread count (OpenVINO's, per stream,
    # do not), so a worker computes as a local run on its machine does, with every core.
    model = keras_extractor(recipe["backbone"], recipe["img_size"],
                            recipe["description"]["pool"], recipe["precision"])
    model.set_weights(recipe["weights"])
    return TensorFlowEngine(model, recipe["batch_size"], recipe["precision"],
                            recipe["description"])


def load_keras_classifier(path):
    """The Keras model of an exported classifier.keras; one PipelineError if it is none."""
    import keras
    if not Path(path).is_file():
        raise PipelineError(f"{path} does not exist: run `dvc repro export` first, or pass "
                            "--model the path of an exported classifier.keras")
    try:
        return keras.models.load_model(path)
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds on a bad file
        reason = " ".join(str(error).split()).split(". ")[0][:200]
        raise PipelineError(f"{path} is not a Keras model ({reason}): pass --model the "
                            "classifier.keras that `dvc repro export` writes") from None


def _run_keras_classifier(path, batch_size):
    return TensorFlowEngine(load_keras_classifier(path), batch_size)


# In order of preference: predict runs the first whose exported model is there.
REGISTRY = {
    "openvino": EngineKind(write=_write_openvino, load=_load_openvino, recipe=_openvino_recipe,
                           build=_build_openvino, classifier_file=_openvino_classifier_file,
                           run_classifier=_run_openvino_classifier),
    "tensorflow": EngineKind(write=_write_tensorflow, load=_load_tensorflow,
                             recipe=_tensorflow_recipe, build=_build_tensorflow,
                             classifier_file=Path, run_classifier=_run_keras_classifier),
}
