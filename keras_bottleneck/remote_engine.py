"""The engine extract runs on a Ray cluster (see cluster): a pool of Ray Core actors that each
hold the engine (see engines), built from a recipe sent once through Ray's object store, fed
padded batches by the driver, their outputs returned in order."""
import sys
from collections import Counter, deque

from . import engines
from .cluster import INSTALL, START_SECONDS, as_local, first_line, node_name
from .errors import PipelineError

ATTEMPTS = 3  # runs of one batch, its worker dying each time, before extract gives up


def load(cluster, directory, backbone, extract, img_size):
    """The engine extract runs, as a pool of workers on `cluster` (a cluster.Cluster)."""
    recipe = engines.recipe(directory, backbone, extract, img_size)
    return RayEngine(cluster, cluster.ray.put(recipe), extract.batch_size,
                     recipe["description"])


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
            self.engine = engines.build(self.ray.get(recipe[0]), self.threads)
        return self.engine

    def describe(self, recipe):
        engine = self._engine(recipe)
        return {"node": self.node, "input_shape": tuple(engine.input_shape),
                "output_shape": tuple(engine.output_shape),
                "jobs": engine.jobs, "runtime": engine.runtime,
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
                                f"load the backbone: {first_line(error)}") from None
        shared = {key: {str(worker[key]) for worker in described}
                  for key in ("output_shape", "runtime", "native_bfloat16")}
        if any(len(values) > 1 for values in shared.values()):
            raise PipelineError(f"the workers on the Ray cluster at {cluster.address} differ "
                                f"({shared}): install the same on every node: {INSTALL}")
        self.nodes = [worker["node"] for worker in described]
        self.input_shape = described[0]["input_shape"]
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
                raise as_local(error) from None
            except died as error:
                if attempt == ATTEMPTS:
                    raise PipelineError(f"Ray workers died {ATTEMPTS} times running the same "
                                        f"batches ({first_line(error)}): check the cluster "
                                        "with `ray status` and the nodes' memory") from None
                print(f"warning: the Ray worker on {self.nodes[index]} died "
                      f"({first_line(error)}): its {len(call)} batches run again",
                      file=sys.stderr)
                self.retried_batches += len(call)
                submitted = self._submit(call, busy)
            finally:
                busy[index] -= 1
