"""The inference engines that run the frozen backbone for extract (extract.engine).

- openvino: the very model Keras builds (preprocess_input, the backbone, the optional pooling),
  converted once by the backbone stage into models/backbone/ (OpenVINO IR), then compiled for
  throughput and fed through one async infer request per stream: extract imports no TensorFlow.
- tensorflow: the Keras model, built in extract and run as one traced tf.function.

Both take batches of float32 pixels (0 to 255, as decoded) at one fixed batch shape, the last
batch padded, so that a row's features do not depend on its batch-mates, and name in `last_node`
the machine that computed their latest output (cluster.RayEngine: a cluster's); extract.precision
bfloat16 is OpenVINO's INFERENCE_PRECISION_HINT bf16, TensorFlow's oneDNN bfloat16
auto-mixed-precision on a CPU, and Keras' mixed_bfloat16 policy on a GPU.
"""
import json
import platform
from collections import deque
from pathlib import Path

import numpy as np

from . import backbones
from .checksums import sha256_of
from .atomic import read_json
from .errors import PipelineError, damaged

DESCRIPTION = "backbone.json"
OPENVINO_MODEL = "backbone.xml"
_OPENVINO_PRECISION = {"float32": "f32", "bfloat16": "bf16"}


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


def weights_id(weights):
    """backbone.weights as it identifies the weights: a file by its content."""
    return weights if weights in ("imagenet", "none") else "sha256:" + sha256_of(weights)


def describe(params):
    """What models/backbone/ holds and was made from: the backbone stage's description."""
    backbone, extract = params["backbone"], params["extract"]
    return {"format": 1, "engine": extract["engine"], "backbone": backbone["name"],
            "weights": weights_id(backbone["weights"]),
            "alpha": backbone["alpha"] if backbones.REGISTRY[backbone["name"]].has_alpha else None,
            "img_size": params["prepare"]["img_size"], "pool": extract["pool"]}


def write_backbone(params, directory):
    """The backbone stage: with the openvino engine, the extractor converted to OpenVINO IR
    (float32 weights; precision is chosen when extract compiles it); with tensorflow, only the
    description (extract builds the Keras model itself, seeded, in a second)."""
    description = describe(params)
    directory = Path(directory)
    if description["engine"] == "openvino":
        import keras
        import openvino as ov
        import tensorflow as tf
        model = extractor(backbones.build_for_extraction(params["backbone"],
                                                         description["img_size"]),
                          description["backbone"], description["pool"])
        ov.save_model(convert(model), directory / OPENVINO_MODEL, compress_to_fp16=False)
        description["converted_with"] = {"keras": keras.__version__,
                                         "tensorflow": tf.__version__,
                                         "openvino": ov.get_version().split("-")[0]}
    (directory / DESCRIPTION).write_text(json.dumps(description, indent=1) + "\n")
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


def checked_description(directory, params, img_size):
    """models/backbone/'s description, checked against params, so that a model converted for
    other params is never used."""
    description = read_description(directory)
    expected = describe({**params, "prepare": {"img_size": img_size}})
    stale = [key for key in expected if description.get(key) != expected[key]]
    if stale:
        raise PipelineError(f"{Path(directory)} was made for other params ({', '.join(stale)} "
                            "differ): run `dvc repro` to rebuild it with the backbone stage")
    return description


def load(directory, params, img_size):
    """The engine extract runs on this machine, from models/backbone/ and params."""
    description = checked_description(directory, params, img_size)
    extract = params["extract"]
    if description["engine"] == "openvino":
        return OpenVINOEngine(Path(directory) / OPENVINO_MODEL, extract["batch_size"],
                              extract["precision"], description)
    model = keras_extractor(params["backbone"], img_size, extract["precision"], description)
    return TensorFlowEngine(model, extract["batch_size"], extract["precision"], description)


def keras_extractor(backbone, img_size, precision, description):
    """The Keras extractor the tensorflow engine runs, as the backbone stage described it."""
    return extractor(backbones.build_for_extraction(backbone, img_size, precision),
                     description["backbone"], description["pool"])


def native_bfloat16():
    """Whether this CPU computes in bfloat16 natively (AVX512_BF16 or AMX): as OpenVINO's CPU
    plugin reports it. Elsewhere bfloat16 is emulated or ignored, and gives other bytes."""
    import openvino as ov
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def fingerprint(engine, extract):
    """What an image's features depend on besides its pixels: the backbone and how it was
    converted, the engine, its version and precision (and, in bfloat16, whether the CPU does it
    natively), the storage type and the batch shape (floating-point results may differ in the
    last bits between batch shapes; every batch is padded to it)."""
    found = {"format": 2, **engine.description, "runtime": engine.runtime,
             "precision": extract["precision"], "dtype": extract["dtype"],
             "batch_size": extract["batch_size"], "numpy": np.__version__,
             "machine": platform.machine()}
    if extract["precision"] == "bfloat16":
        found["native_bfloat16"] = engine.native_bfloat16()
    return found


class OpenVINOEngine:
    """A converted backbone compiled for throughput (PERFORMANCE_HINT THROUGHPUT: several
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
    """The Keras extractor as one traced graph (tracing ResNet50 takes seconds: once per
    process), at one batch shape."""

    def __init__(self, model, batch_size, precision="float32", description=None):
        import keras
        import tensorflow as tf
        gpu = bool(tf.config.list_physical_devices("GPU"))
        if precision == "bfloat16" and not gpu:
            # Process-wide, and reaches graphs traced earlier too: extract runs in its own process.
            tf.config.optimizer.set_experimental_options(
                {"auto_mixed_precision_onednn_bfloat16": True})
        spec = tf.TensorSpec((batch_size,) + tuple(model.input_shape[1:]), model.inputs[0].dtype)
        # jit_compile (XLA) measured no faster on CPU and compiles twice as long.
        self.forward = tf.function(lambda images: model(images, training=False),
                                   input_signature=[spec])
        self.model, self.batch_size, self.description = model, batch_size, description
        self.last_node, self.jobs = platform.node(), 1  # jobs: batches in flight
        self.output_shape = tuple(model.output_shape[1:])
        self.runtime = {"tensorflow": tf.__version__, "keras": keras.__version__,
                        "device": "GPU" if gpu else "CPU"}

    def native_bfloat16(self):
        return native_bfloat16()

    def outputs(self, batches):
        for batch in batches:
            yield np.asarray(self.forward(batch), dtype=np.float32)
