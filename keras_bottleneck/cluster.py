"""Where the per-image work of preprocess and extract runs (compute.*): on this machine, or on
a Ray cluster (compute.engine ray): connecting, checking the nodes, decoding as Ray tasks (the
backbone's pool of actors: remote_engine).

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
import threading
from collections import deque
from pathlib import Path

from .errors import PipelineError
from .parallel import apply_each, chunks_of

# What a worker's results depend on besides its inputs, checked on every node before any work.
LIBRARIES = ("numpy", "pillow", "pillow-heif", "openvino", "keras", "tensorflow",
             "tensorflow-cpu", "ray")
INSTALL = "pip install -e '.[cpu,ray]' in a clone of this very commit"
CONNECT_SECONDS = 60  # ray.init retries for minutes where a port answers but is no Ray head
START_SECONDS = 300  # for the workers to be placed and to load the engine


def connect(compute):
    """A Cluster for compute.engine ray, None for local (this machine's cores)."""
    return _PLACES[compute.engine](compute)


def _connect_ray(compute):
    try:
        import ray
    except ImportError:
        raise PipelineError("compute.engine ray needs Ray on this machine: pip install -e "
                            "'.[cpu,ray]' (and the same on every node of the cluster)") from None
    address = compute.address or os.environ.get("RAY_ADDRESS", "")
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
        raise PipelineError(f"cannot use the Ray cluster at {address}: {first_line(error)} "
                            f"(install the same Python and Ray on every node: {INSTALL})"
                            ) from None
    finally:
        watchdog.cancel()
    check_nodes(ray, address)
    return Cluster(ray, compute, address)


_PLACES = {"local": lambda compute: None, "ray": _connect_ray}


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


def first_line(error):
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
            raise PipelineError(f"{where} cannot run the project's code ({first_line(error)}): "
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
        self.cpus_per_worker = compute.cpus_per_worker
        self.gpus_per_worker = compute.gpus_per_worker
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        fitting = int(cpus // self.cpus_per_worker)
        if self.gpus_per_worker:
            fitting = min(fitting, int(gpus // self.gpus_per_worker))
        self.workers = compute.workers or fitting
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
            raise as_local(error) from None


def as_local(error):
    """A task's own error as a local run raises it: a bad image, a full disk, out of memory are
    one line; anything else keeps the worker's traceback."""
    if isinstance(error.cause, (PipelineError, MemoryError, OSError)):
        return error.cause
    return error
