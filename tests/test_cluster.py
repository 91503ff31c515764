"""compute.engine ray: preprocess and extract on a real two-node Ray cluster (`ray start --head`
and `ray start --address`, 1 CPU each) in a network namespace that has only the loopback
interface, driven by the real `dvc repro`; the outputs equal a local run's byte for byte."""
import os
import re
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from _benchmark import run_benchmark
from _dvc_project import FAST_BACKBONE, UP_TO_DATE, contents, snapshot
from conftest import make_folder_dataset, make_project, subprocess_env
from keras_bottleneck.errors import PipelineError
from keras_bottleneck.testing.loopback_cluster import LoopbackCluster, unavailable


WHY_NOT = unavailable()
needs_cluster = pytest.mark.skipif(WHY_NOT is not None, reason=f"no Ray test cluster: {WHY_NOT}")
# Enough batches that a worker can be killed while extract is under way.
DATASET = {"classes": 3, "train": 100, "test": 20}
PARAMS = {**FAST_BACKBONE, "prepare.train_count": 300, "prepare.test_count": 60}
WORKER_AT_WORK = "ExtractionWorker.features"  # the title Ray gives an actor running that method


def outputs(project):
    return {name: contents(snapshot(project.root / "data" / name))
            for name in ("prepared", "features")}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A project run here, with float16 then float32 features: what the cluster must match."""
    root = tmp_path_factory.mktemp("local")
    dataset = make_folder_dataset(root / "images", **DATASET)
    project = make_project(root / "project", subprocess_env(root), dataset, **PARAMS)
    project.repro("extract")
    float16 = outputs(project)
    project.set_params(**{"extract.dtype": "float32"})
    project.repro("extract")
    return project, dataset, {"float16": float16, "float32": outputs(project)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LoopbackCluster(nodes=2, cpus=1) as running:
        yield running
    assert not running.processes()


@pytest.fixture(scope="module")
def on_cluster(tmp_path_factory, local, cluster):
    """A project on a copy of the local project's dataset, run on the cluster."""
    _, dataset, _ = local
    root = tmp_path_factory.mktemp("on_cluster")
    copy = make_folder_dataset(root / "images", **DATASET)  # the same seed: the same images
    assert contents(snapshot(copy)) == contents(snapshot(dataset))
    return make_project(root / "project", subprocess_env(root), copy, **PARAMS,
                        **{"compute.engine": "ray", "compute.address": cluster.address})


def repro_in(cluster, project, *args):
    return subprocess.run(cluster.command(["python", "-m", "dvc", "repro", *args]),
                          cwd=project.root, env=project.env, capture_output=True, text=True,
                          timeout=900)


def assert_ran(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@needs_cluster
@pytest.mark.slow  # a real cluster, a dvc pipeline or a benchmark
def test_extract_on_two_nodes_equals_a_local_run(local, cluster, on_cluster):
    assert_ran(repro_in(cluster, on_cluster, "extract"))
    assert outputs(on_cluster) == local[2]["float16"]
    extract = on_cluster.metrics("extract")
    assert extract["compute"] == "ray" and extract["backbone_images"] == 360
    assert len(extract["nodes"]) == 2, extract["nodes"]  # both nodes computed rows
    assert all(rows > 0 for rows in extract["nodes"].values())
    assert sum(extract["nodes"].values()) == 360
    assert on_cluster.metrics("preprocess")["decoded_images"] == 360


@needs_cluster
@pytest.mark.slow  # a real cluster, a dvc pipeline or a benchmark
def test_a_worker_killed_mid_extract_changes_no_byte(local, cluster, on_cluster):
    on_cluster.set_params(**{"extract.dtype": "float32"})  # features extracted anew
    log = on_cluster.root / "repro.log"
    with open(log, "w") as output:
        running = subprocess.Popen(cluster.command(["python", "-m", "dvc", "repro", "extract"]),
                                   cwd=on_cluster.root, env=on_cluster.env, stdout=output,
                                   stderr=subprocess.STDOUT, text=True)
        killed = None
        while killed is None and running.poll() is None:
            at_work = [pid for pid, command in cluster.processes().items()
                       if WORKER_AT_WORK in command]
            if at_work:
                killed = at_work[0]
                cluster_kill(killed)
            time.sleep(0.02)
        running.wait(timeout=900)
    printed = log.read_text()
    assert killed is not None, f"no worker was seen at work:\n{printed}"
    assert running.returncode == 0, printed[-4000:]
    assert "died" in printed and "run again" in printed, printed[-4000:]
    assert on_cluster.metrics("extract")["retried_batches"] > 0
    assert outputs(on_cluster)["features"] == local[2]["float32"]["features"]


def cluster_kill(pid):
    """SIGKILL, as the kernel's out-of-memory killer ends a process."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@needs_cluster
@pytest.mark.slow  # a real cluster, a dvc pipeline or a benchmark
def test_only_added_images_go_to_the_cluster(cluster, on_cluster):
    assert_ran(repro_in(cluster, on_cluster, "extract"))  # whatever ran before: up to date
    folder = on_cluster.params()["data"]["path"]
    rng = np.random.default_rng(7)
    for i in range(3):
        pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(f"{folder}/train/class_{i}/new_{i}.png")
    on_cluster.set_params(**{"prepare.train_count": 303})
    assert_ran(repro_in(cluster, on_cluster, "extract"))
    assert on_cluster.metrics("preprocess")["decoded_images"] == 3
    extract = on_cluster.metrics("extract")
    assert extract["backbone_images"] == 3 and sum(extract["nodes"].values()) == 3
    assert all(node.startswith("127.0.0.1/") for node in extract["nodes"])


@pytest.mark.slow  # a real cluster, a dvc pipeline or a benchmark
def test_compute_params_re_run_nothing(local):
    project = local[0]
    project.set_params(**{"compute.engine": "ray", "compute.address": "10.0.0.9:6379",
                          "compute.workers": 8, "compute.cpus_per_worker": 4,
                          "compute.gpus_per_worker": 1})
    assert UP_TO_DATE in project.dvc("status", "extract").stdout


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("address", ["unreachable", ""])
@pytest.mark.slow  # a real cluster, a dvc pipeline or a benchmark
def test_a_cluster_that_cannot_be_reached_is_one_line(project, address, monkeypatch):
    address = f"127.0.0.1:{free_port()}" if address else ""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    project.env.pop("RAY_ADDRESS", None)
    project.set_params(**{"compute.engine": "ray", "compute.address": address})
    started = time.monotonic()
    result = project.dvc("repro", "preprocess", check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    expected = (f"error: cannot reach the Ray cluster at {address} (Connection refused): "
                "start it with `ray start --head" if address
                else "error: compute.engine is ray but no cluster is named: set compute.address")
    assert errors and errors[0].startswith(expected), result.stderr
    assert "Traceback" not in result.stderr
    assert not (project.root / "data" / "prepared").exists()
    assert time.monotonic() - started < 120  # fails at once, not after Ray's minutes of retries


@needs_cluster
@pytest.mark.slow  # a real cluster, a dvc pipeline or a benchmark
def test_the_tensorflow_engine_on_two_nodes_equals_a_local_run(tmp_path, cluster):
    """Its workers get the Keras weights through the object store (`weights: none` here, but
    built on the driver: a worker never downloads nor reads a weights file)."""
    dataset = make_folder_dataset(tmp_path / "images", classes=3, train=10, test=3)
    settings = {**FAST_BACKBONE, "extract.engine": "tensorflow", "prepare.train_count": 30,
                "prepare.test_count": 9}
    here = make_project(tmp_path / "here", subprocess_env(tmp_path), dataset, **settings)
    here.repro("extract")
    there = make_project(tmp_path / "there", subprocess_env(tmp_path), dataset, **settings,
                         **{"compute.engine": "ray", "compute.address": cluster.address})
    assert_ran(repro_in(cluster, there, "extract"))
    assert outputs(there) == outputs(here)
    assert len(there.metrics("extract")["nodes"]) == 2


@needs_cluster
@pytest.mark.slow  # a real cluster, a dvc pipeline or a benchmark
def test_a_node_running_other_code_is_refused_before_any_work(project, cluster):
    """Ray puts the driver's working directory first on its workers' sys.path: here they import
    the project's copy of keras_bottleneck, edited, while the driver runs the installed one. The
    node is named in one line, and nothing is decoded."""
    with open(project.root / "keras_bottleneck" / "__init__.py", "a") as module:
        module.write("# another commit\n")
    project.set_params(**{"compute.engine": "ray", "compute.address": cluster.address})
    result = repro_in(cluster, project, "preprocess")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and re.match(r"error: the Ray node 127\.0\.0\.1/\w+ of 127\.0\.0\.1:6379 has "
                               r"keras_bottleneck \w+ \(here \w+\): install the same on every "
                               r"node", errors[0]), result.stderr
    assert "Traceback" not in result.stderr
    assert not (project.root / "data" / "prepared").exists()


@needs_cluster
@pytest.mark.slow  # a real cluster, a dvc pipeline or a benchmark
def test_the_cluster_benchmark_runs_and_checks_its_targets(tmp_path):
    figures, table = run_benchmark(tmp_path, "cluster.py", "--images", "30", "--img-size", "64",
                                   "--backbone", "vgg16", "--workers", "2")
    assert figures["ray_1"]["identical_to_local"] is True
    assert len(figures["ray_1"]["nodes"]) == 1 and figures["scaling"]["2"]["nodes"] == 2
    assert figures["targets"]["ray_features_identical_to_local"]["met"] is True
    assert "extract through Ray, 1 worker of 1 CPU" in table


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:{port}", "cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused)"),
    ("", "compute.engine is ray but no cluster is named: set compute.address"),
    ("no-port", "compute.address 'no-port' is no Ray address"),
])
def test_connecting_to_no_cluster_is_one_line_at_once(address, expected, monkeypatch):
    """Without a pipeline: cluster.connect on params alone (traffic to 127.0.0.1 only)."""
    from keras_bottleneck import cluster, params
    port = free_port()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    compute = params.section("compute", {"engine": "ray", "address": address.format(port=port)})
    started = time.monotonic()
    with pytest.raises(PipelineError) as caught:
        cluster.connect(compute)
    assert str(caught.value).startswith(expected.format(port=port))
    assert "\n" not in str(caught.value) and time.monotonic() - started < 30
    assert cluster.connect(params.section("compute", {})) is None  # local: nothing to connect
