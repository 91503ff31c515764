"""Where the per-image work of preprocess and extract runs (compute.*): on this machine, or on
a Ray cluster (compute.engine ray).

With ray, this process (the driver, which `dvc repro` runs) connects to the cluster, checks that
every node has the project's package and the same libraries, and still writes every output
itself, in order and in bounded memory. It sends workers what they need: image bytes to decode,
padded batches of pixels for the backbone, and the converted backbone (or the Keras weights)
once through Ray's object store. Workers need no shared file system and no network of their
own. Decoding runs as Ray tasks, the backbone in a pool of Ray Core actors that each hold the
engine: Ray Data deadlocks on a small cluster whose actors hold every CPU (its read task waits for
one). An actor that dies is restarted, and its batches run again on the first free actor.
"""
import hashlib
import importlib.metadata
import os
import platform
import socket
import sys
import tempfile
import threading
from collections import Counter, deque
from pathlib import Path

from . import engines
from .errors import PipelineError
from .parallel import apply_each, chunks_of

# What a worker's results depend on besides its inputs, checked on every node before any work.
LIBRARIES = ("numpy", "pillow", "pillow-heif", "openvino", "keras", "tensorflow",
             "tensorflow-cpu", "ray")
INSTALL = "pip install -e '.[cpu,ray]' in a clone of this very commit"
CONNECT_SECONDS = 60  # ray.init retries for minutes where a port answers but is no Ray head
START_SECONDS = 300  # for the workers to be placed and to load the engine
ATTEMPTS = 3  # runs of one batch, its worker dying each time, before extract gives up


def connect(compute):
    """A Cluster for compute.engine ray, None for local (this machine's cores)."""
    if compute["engine"] == "local":
        return None
    try:
        import ray
    except ImportError:
        raise PipelineError("compute.engine ray needs Ray on this machine: pip install -e "
                            "'.[cpu,ray]' (and the same on every node of the cluster)") from None
    address = compute["address"] or os.environ.get("RAY_ADDRESS", "")
    if not address:
        raise PipelineError("compute.engine is ray but no cluster is named: set compute.address "
                            "(or RAY_ADDRESS) to the head's host:port, which `ray start --head` "
                            "prints")
    check_reachable(address)
    watchdog = threading.Timer(CONNECT_SECONDS, _give_up, [
        f"the Ray cluster at {address} did not accept a connection in {CONNECT_SECONDS} s: "
        "check that compute.address (or RAY_ADDRESS) is the head's GCS port (6379 unless "
        "`ray start --head --port` chose another)"])
    watchdog.daemon = True
    watchdog.start()
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise PipelineError(f"cannot use the Ray cluster at {address}: {_first_line(error)} "
                            f"(install the same Python and Ray on every node: {INSTALL})"
                            ) from None
    finally:
        watchdog.cancel()
    check_nodes(ray, address)
    return Cluster(ray, compute, address)


def check_reachable(address):
    """One line, at once, for an address nothing listens on (ray.init would retry for minutes)."""
    if address == "auto":  # a cluster started on this machine, found by Ray itself
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise PipelineError(f"compute.address {address!r} is no Ray address: give the head's "
                            "host:port, e.g. 10.0.0.5:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as error:
        raise PipelineError(f"cannot reach the Ray cluster at {address} "
                            f"({error.strerror or error}): start it with `ray start --head "
                            f"--port={port}` on {host}, or set compute.address (or RAY_ADDRESS) "
                            "to a running cluster's head") from None


def _give_up(message):
    # ray.init cannot be interrupted from Python: end the stage before it has written anything.
    print("error:", message, file=sys.stderr)
    os._exit(1)


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


def package_digest():
    """The project's package as the bytes of its modules: nodes with one digest run one code."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def environment():
    """This machine's Python, architecture, project package and libraries (None: absent)."""
    found = {"python": platform.python_version(), "machine": platform.machine(),
             "keras_bottleneck": package_digest()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def differences(ours, theirs):
    """What `theirs` (a node's environment()) has that differs from `ours`, in words."""
    return [f"{key} {theirs.get(key)} (here {value})" for key, value in ours.items()
            if theirs.get(key) != value]


def check_nodes(ray, address):
    """Run environment() on every live node, pinned to it, and refuse any that differs: the
    outputs must not depend on where a row was computed."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    probe = ray.remote(num_cpus=0, max_retries=0)(environment)
    ours = environment()
    nodes = [node for node in ray.nodes() if node["Alive"]]
    answers = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node["NodeID"], soft=False)).remote() for node in nodes]
    for node, answer in zip(nodes, answers):
        where = f"the Ray node {node_name(node['NodeManagerAddress'], node['NodeID'])} of {address}"
        try:
            theirs = ray.get(answer, timeout=START_SECONDS)
        except ray.exceptions.GetTimeoutError:
            raise PipelineError(f"{where} did not answer in {START_SECONDS} s: check it with "
                                "`ray status`") from None
        except ray.exceptions.RayError as error:
            raise PipelineError(f"{where} cannot run the project's code ({_first_line(error)}): "
                                f"install it there as here: {INSTALL}") from None
        if found := differences(ours, theirs):
            raise PipelineError(f"{where} has {', '.join(found)}: install the same on every "
                                f"node: {INSTALL}")


def node_name(address, node_id):
    """A node as metrics/extract.json names it: its address and the start of Ray's node id."""
    return f"{address}/{node_id[:12]}"


class Cluster:
    """A connected Ray cluster and the workers params ask for: compute.workers (0: as many as
    fit) of compute.cpus_per_worker CPUs and compute.gpus_per_worker GPUs each."""

    def __init__(self, ray, compute, address):
        self.ray, self.address = ray, address
        self.cpus_per_worker = compute["cpus_per_worker"]
        self.gpus_per_worker = compute["gpus_per_worker"]
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        fitting = int(cpus // self.cpus_per_worker)
        if self.gpus_per_worker:
            fitting = min(fitting, int(gpus // self.gpus_per_worker))
        self.workers = compute["workers"] or fitting
        if not 0 < self.workers <= fitting:
            raise PipelineError(
                f"the Ray cluster at {address} has {cpus:g} CPUs and {gpus:g} GPUs, room for "
                f"{fitting} workers of compute.cpus_per_worker {self.cpus_per_worker} and "
                f"compute.gpus_per_worker {self.gpus_per_worker:g}, not "
                f"{self.workers or 'one'}: lower compute.workers or the per-worker share, or "
                "add nodes")

    def ordered_map(self, function, items, chunk_size=64, chunk_bytes=8 << 20):
        """function(*item) for each tuple of `items` (bytes, not paths: workers share no files),
        in order, as Ray tasks of one CPU and a chunk of items each, two per CPU in flight.
        A task whose worker died runs again (Ray retries it)."""
        task = self.ray.remote(num_cpus=1)(apply_each)
        window = 2 * self.workers * self.cpus_per_worker
        chunks, pending = chunks_of(items, chunk_size, chunk_bytes), deque()
        try:
            while True:
                while len(pending) < window and (chunk := next(chunks, None)):
                    pending.append(task.remote(function, chunk))
                if not pending:
                    return
                yield from self._result(pending.popleft())
        finally:
            for ref in pending:  # the consumer stopped early or failed: drop the rest
                self.ray.cancel(ref)

    def _result(self, ref):
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:
            raise _as_local(error) from None

    def engine(self, directory, params, img_size):
        """The engine extract runs (see engines) as a pool of workers on the cluster."""
        description = engines.checked_description(directory, params, img_size)
        recipe = self.ray.put(_recipe(directory, params, img_size, description))
        return RayEngine(self, recipe, params["extract"]["batch_size"], description)


def _recipe(directory, params, img_size, description):
    """What a worker builds its engine from, with no file and no network of its own."""
    extract = params["extract"]
    recipe = {"engine": description["engine"], "batch_size": extract["batch_size"],
              "precision": extract["precision"], "description": description}
    if description["engine"] == "openvino":
        model = Path(directory) / engines.OPENVINO_MODEL
        return {**recipe, "xml": model.read_bytes(), "bin": model.with_suffix(".bin").read_bytes()}
    local = engines.load(directory, params, img_size)  # its weights: imagenet needs the network
    return {**recipe, "backbone": {**params["backbone"], "weights": "none"},
            "img_size": img_size, "weights": local.model.get_weights()}


def _as_local(error):
    """A task's own error as a local run raises it: a bad image, a full disk, out of memory are
    one line; anything else keeps the worker's traceback."""
    if isinstance(error.cause, (PipelineError, MemoryError, OSError)):
        return error.cause
    return error


def _build(recipe, threads):
    if recipe["engine"] == "openvino":
        with tempfile.TemporaryDirectory() as folder:
            model = Path(folder) / engines.OPENVINO_MODEL
            model.write_bytes(recipe["xml"])
            model.with_suffix(".bin").write_bytes(recipe["bin"])
            return engines.OpenVINOEngine(model, recipe["batch_size"], recipe["precision"],
                                          recipe["description"], threads=threads)
    from . import backbones
    # No thread limit: TensorFlow's results depend on its thread count (OpenVINO's, per stream,
    # do not), so a worker computes as a local run on its machine does, with every core.
    description = recipe["description"]
    model = engines.extractor(backbones.build_for_extraction(
        recipe["backbone"], recipe["img_size"], recipe["precision"]),
        description["backbone"], description["pool"])
    model.set_weights(recipe["weights"])
    return engines.TensorFlowEngine(model, recipe["batch_size"], recipe["precision"], description)


class ExtractionWorker:
    """A Ray actor holding the engine, built from the recipe at its first call (again after a
    restart), then fed batches. The recipe comes as a reference inside a list, which Ray passes
    as is: the driver keeps it alive, and a restarted actor fetches it again."""

    def __init__(self, threads):
        import ray
        self.ray, self.threads, self.engine = ray, threads, None
        self.node = node_name(ray.util.get_node_ip_address(),
                              ray.get_runtime_context().get_node_id())

    def _engine(self, recipe):
        if self.engine is None:
            self.engine = _build(self.ray.get(recipe[0]), self.threads)
        return self.engine

    def describe(self, recipe):
        engine = self._engine(recipe)
        return {"node": self.node, "output_shape": tuple(engine.output_shape),
                "jobs": getattr(engine, "jobs", 1), "runtime": engine.runtime,
                "native_bfloat16": engines.native_bfloat16()}

    def features(self, recipe, batches):
        return self.node, list(self._engine(recipe).outputs(batches))


class RayEngine:
    """The engines' interface over a pool of ExtractionWorker actors: a call of as many batches
    as an actor's engine keeps in flight goes to the actor with the fewest calls, two calls an
    actor in flight, and outputs come back in order. A call whose actor died (killed, out of
    memory, its node lost) runs again on the least busy actor; the dead one restarts."""

    def __init__(self, cluster, recipe, batch_size, description):
        ray = self.ray = cluster.ray
        self.cluster, self.batch_size, self.description = cluster, batch_size, description
        actor = ray.remote(ExtractionWorker).options(
            num_cpus=cluster.cpus_per_worker, num_gpus=cluster.gpus_per_worker,
            max_restarts=-1, max_task_retries=0)
        self.recipe = [recipe]  # kept referenced: restarted actors read it again
        self.actors = [actor.remote(cluster.cpus_per_worker) for _ in range(cluster.workers)]
        try:
            described = ray.get([worker.describe.remote(self.recipe) for worker in self.actors],
                                timeout=START_SECONDS)
        except ray.exceptions.GetTimeoutError:
            raise PipelineError(f"{cluster.workers} workers did not start on the Ray cluster at "
                                f"{cluster.address} in {START_SECONDS} s (`ray status` shows "
                                "what holds its CPUs): lower compute.workers") from None
        except ray.exceptions.RayError as error:
            raise PipelineError(f"a worker on the Ray cluster at {cluster.address} could not "
                                f"load the backbone: {_first_line(error)}") from None
        shared = {key: {str(worker[key]) for worker in described}
                  for key in ("output_shape", "runtime", "native_bfloat16")}
        if any(len(values) > 1 for values in shared.values()):
            raise PipelineError(f"the workers on the Ray cluster at {cluster.address} differ "
                                f"({shared}): install the same on every node: {INSTALL}")
        self.nodes = [worker["node"] for worker in described]
        self.output_shape = described[0]["output_shape"]
        self.runtime, self.jobs = described[0]["runtime"], described[0]["jobs"]
        self._native_bfloat16 = described[0]["native_bfloat16"]
        self.last_node, self.retried_batches = None, 0

    def native_bfloat16(self):
        return self._native_bfloat16

    def outputs(self, batches):
        batches = iter(batches)
        calls = iter(lambda: [batch for _, batch in zip(range(self.jobs), batches)], [])
        busy, pending = Counter(), deque()
        try:
            while True:
                while len(pending) < 2 * len(self.actors) and (call := next(calls, None)):
                    pending.append(self._submit(call, busy))
                if not pending:
                    return
                node, outputs = self._wait(pending.popleft(), busy)
                for output in outputs:
                    self.last_node = node
                    yield output
        finally:
            for ref, _, _ in pending:
                self.ray.cancel(ref)

    def _submit(self, call, busy):
        index = min(range(len(self.actors)), key=lambda i: busy[i])
        busy[index] += 1
        return self.actors[index].features.remote(self.recipe, call), index, call

    def _wait(self, submitted, busy):
        errors = self.ray.exceptions
        died = (errors.RayActorError, errors.WorkerCrashedError, errors.NodeDiedError,
                errors.OutOfMemoryError, errors.ObjectLostError)
        for attempt in range(1, ATTEMPTS + 1):
            ref, index, call = submitted
            try:
                return self.ray.get(ref)
            except errors.RayTaskError as error:
                raise _as_local(error) from None
            except died as error:
                if attempt == ATTEMPTS:
                    raise PipelineError(f"Ray workers died {ATTEMPTS} times running the same "
                                        f"batches ({_first_line(error)}): check the cluster "
                                        "with `ray status` and the nodes' memory") from None
                print(f"warning: the Ray worker on {self.nodes[index]} died "
                      f"({_first_line(error)}): its {len(call)} batches run again",
                      file=sys.stderr)
                self.retried_batches += len(call)
                submitted = self._submit(call, busy)
            finally:
                busy[index] -= 1
