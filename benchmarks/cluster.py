"""Benchmark preprocess and extract on a Ray cluster (compute.engine ray) against this machine.

    python benchmarks/cluster.py       # here: a head and a worker node of 1 CPU each on 127.0.0.1
                                       # (root: a network namespace), 2000 images, ResNet50 at
                                       # 139 px (~10 min)
    python benchmarks/cluster.py --images 40 --img-size 64 --backbone vgg16   # a quick look
    python benchmarks/cluster.py --address HEAD:6379 --workers 1 2 4 8 --gpu-decoders 1 2 4 8

On a project copy of N random 32 px PNGs (+10 % test images) whose converted backbone is made
once, each measure runs the stage scripts by hand, from scratch:
- bare: the local engine restricted to 1 CPU (OpenVINO with 1 thread), over every prepared image
  in memory: the compute alone;
- local_1cpu: the extract stage here, pinned to 1 CPU (taskset);
- ray_1: the extract stage through the cluster with 1 worker of 1 CPU; its fixed cost (connect,
  the workers' start, the model's load: metrics/extract.json's startup_seconds) apart from the
  throughput of the rest, and its features compared byte for byte with local_1cpu's;
- scaling: preprocess + extract through the cluster with each of --workers W workers;
- gpu: extract with one worker of one GPU, fed by preprocess with each of --gpu-decoders D.
Random weights: the cost does not depend on them. Prints a table, then the JSON (also written to
--json).
"""
import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

import _pipeline
from keras_bottleneck import engines, storage
from keras_bottleneck.features import padded
from keras_bottleneck.testing.loopback_cluster import LoopbackCluster, unavailable

TARGETS = {
    "ray_1_worker_vs_bare_1_cpu": ("ray_1.vs_bare_1cpu", ">=", 0.8),
    "ray_features_identical_to_local": ("ray_1.identical_to_local", ">=", True),
}
SPLITS = ("train", "validation", "test")


def parse_args():
    defaults = yaml.safe_load((_pipeline.REPO_ROOT / "params.yaml").read_text())
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="N, train images")
    parser.add_argument("--img-size", type=int, default=defaults["prepare"]["img_size"])
    parser.add_argument("--backbone", default=defaults["backbone"]["name"])
    parser.add_argument("--address", help="a running cluster's head (default: start 2 nodes "
                        "of 1 CPU here, in a network namespace with only loopback)")
    parser.add_argument("--workers", type=int, nargs="*", default=[2],
                        help="worker counts of the scaling runs (1 CPU each)")
    parser.add_argument("--gpu-decoders", type=int, nargs="*", default=[],
                        help="decode workers feeding one GPU worker (needs a GPU node)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args()


class Runner:
    """Runs a project's stage scripts by hand, inside the cluster's namespace if it has one."""

    def __init__(self, project, cluster):
        self.project, self.cluster = project, cluster

    def stage(self, name, settings, pinned=False, cluster=False):
        self.project.set_params(settings)
        command = [sys.executable, f"stages/{name}.py"]
        if pinned:
            command = ["taskset", "-c", "0"] + command
        if cluster and self.cluster is not None:
            command = self.cluster.command(command)
        result = subprocess.run(command, cwd=self.project.root, env=_pipeline.environment(),
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{result.stdout}\n{result.stderr[-4000:]}")
        return self.project.metrics(name)

    def from_scratch(self, *outputs):
        for output in outputs:
            shutil.rmtree(self.project.root / "data" / output, ignore_errors=True)


def throughput(metrics):
    """Images/s of a stage once started: its images over its seconds less the fixed cost."""
    return round(metrics["images"] / (metrics["seconds"] - metrics.get("startup_seconds", 0)), 2)


def features(project):
    """Each stored split of data/features: its rows' bytes and keys."""
    folder = project.root / "data" / "features"
    return {index.name: (storage.read_split(folder, index.name[:-len("_index.npy")]).rows[:]
                         .tobytes(), storage.read_split(folder, index.name[:-len("_index.npy")])
                         .keys.tobytes())
            for index in sorted(folder.glob("*_index.npy"))}


def bare_1cpu(project, batch_size):
    """Images/s of OpenVINO with 1 thread over every prepared image, in memory."""
    images = np.concatenate([storage.read_split(project.root / "data" / "prepared", split).rows[:]
                             for split in SPLITS])
    batches = [padded(images[start:start + batch_size].astype(np.float32), batch_size)
               for start in range(0, len(images), batch_size)]
    engine = engines.OpenVINOEngine(project.root / "models" / "backbone" / engines.OPENVINO_MODEL,
                                    batch_size, "float32", threads=1)
    started = time.perf_counter()
    for _ in engine.outputs(iter(batches)):
        pass
    return round(len(images) / (time.perf_counter() - started), 2)


def measure(args, workdir, cluster, address):
    local = {"compute.engine": "local"}
    on_cluster = {"compute.engine": "ray", "compute.address": address,
                  "compute.cpus_per_worker": 1, "compute.gpus_per_worker": 0}
    project = _pipeline.DvcProject(workdir / "project", args.images, {
        "backbone.name": args.backbone, "backbone.weights": "none",
        "prepare.img_size": args.img_size, **local})
    _pipeline.progress("fetch and backbone (dvc repro)")
    project.run("dvc", "repro", "fetch", "backbone")
    run = Runner(project, cluster)
    _pipeline.progress("preprocess here")
    run.stage("preprocess", local)
    batch_size = project.params()["extract"]["batch_size"]
    _pipeline.progress("bare engine, 1 thread")
    figures = {"bare_1cpu": {"images_per_second": bare_1cpu(project, batch_size)}}
    _pipeline.progress("extract here, pinned to 1 CPU")
    run.from_scratch("features")
    pinned = run.stage("extract", local, pinned=True)
    local_features = features(project)
    figures["local_1cpu"] = {"seconds": pinned["seconds"],
                             "startup_seconds": pinned["startup_seconds"],
                             "images_per_second": throughput(pinned)}
    _pipeline.progress("extract through the cluster, 1 worker")
    run.from_scratch("features")
    ray_1 = run.stage("extract", {**on_cluster, "compute.workers": 1}, cluster=True)
    figures["ray_1"] = {"seconds": ray_1["seconds"], "startup_seconds": ray_1["startup_seconds"],
                        "images_per_second": throughput(ray_1), "nodes": ray_1["nodes"],
                        "identical_to_local": features(project) == local_features}
    for baseline in ("bare_1cpu", "local_1cpu"):
        figures["ray_1"][f"vs_{baseline.replace('_1cpu', '')}_1cpu"] = round(
            figures["ray_1"]["images_per_second"]
            / figures[baseline]["images_per_second"], 3)
    figures["scaling"] = {}
    for workers in args.workers:
        _pipeline.progress(f"preprocess + extract through the cluster, {workers} workers")
        settings = {**on_cluster, "compute.workers": workers}
        figures["scaling"][workers] = pipeline_run(run, settings, settings)
    figures["gpu"] = {}
    for decoders in args.gpu_decoders:
        _pipeline.progress(f"preprocess with {decoders} decode workers, extract on 1 GPU")
        figures["gpu"][decoders] = pipeline_run(
            run, {**on_cluster, "compute.workers": decoders},
            {**on_cluster, "compute.workers": 1, "compute.gpus_per_worker": 1})
    return figures


def pipeline_run(run, preprocess_settings, extract_settings):
    run.from_scratch("prepared", "features")
    preprocess = run.stage("preprocess", preprocess_settings, cluster=True)
    extract = run.stage("extract", extract_settings, cluster=True)
    seconds = preprocess["seconds"] + extract["seconds"]
    return {"preprocess_seconds": preprocess["seconds"], "extract_seconds": extract["seconds"],
            "extract_startup_seconds": extract["startup_seconds"],
            "images_per_second": round(extract["images"] / seconds, 2),
            "nodes": len(extract["nodes"])}


def print_table(figures):
    conditions = figures["conditions"]
    print(f"\n{conditions['backbone']} at {conditions['img_size']} px, {conditions['images']} "
          f"train images (+10 %), {conditions['cpu']} ({conditions['cpus']} CPUs), cluster: "
          f"{conditions['cluster']}\n")
    print("| measure | img/s | seconds | fixed cost (s) |\n| --- | --- | --- | --- |")
    print(f"| bare OpenVINO, 1 thread, in memory | {figures['bare_1cpu']['images_per_second']} "
          "| | |")
    for name, label in (("local_1cpu", "extract here, 1 CPU"),
                        ("ray_1", "extract through Ray, 1 worker of 1 CPU")):
        row = figures[name]
        print(f"| {label} | {row['images_per_second']} | {row['seconds']} | "
              f"{row['startup_seconds']} |")
    for workers, row in figures["scaling"].items():
        print(f"| preprocess + extract through Ray, {workers} workers ({row['nodes']} nodes) | "
              f"{row['images_per_second']} | {row['preprocess_seconds']} + "
              f"{row['extract_seconds']} | {row['extract_startup_seconds']} |")
    for decoders, row in figures["gpu"].items():
        print(f"| {decoders} decode workers, extract on 1 GPU | {row['images_per_second']} | "
              f"{row['preprocess_seconds']} + {row['extract_seconds']} | "
              f"{row['extract_startup_seconds']} |")
    ray_1 = figures["ray_1"]
    print(f"\nRay at 1 worker: {ray_1['vs_bare_1cpu']} x the bare engine at 1 CPU, "
          f"{ray_1['vs_local_1cpu']} x the extract stage here at 1 CPU; features identical "
          f"to local: {ray_1['identical_to_local']}")
    _pipeline.print_targets(figures["targets"])


def main():
    args = parse_args()
    if args.address is None and (why := unavailable()):
        sys.exit(f"error: cannot start a cluster here ({why}): give --address of a running one")
    with tempfile.TemporaryDirectory(prefix="keras-bottleneck-cluster-") as tmp:
        with (contextlib.nullcontext() if args.address
              else LoopbackCluster(nodes=2, cpus=1)) as cluster:
            address = args.address or cluster.address
            figures = {"conditions": _pipeline.conditions(
                backbone=args.backbone, img_size=args.img_size, weights="random",
                images=args.images,
                cluster=args.address or "2 nodes of 1 CPU on 127.0.0.1 (this machine)")}
            figures.update(measure(args, Path(tmp), cluster, address))
    _pipeline.report(figures, TARGETS, print_table, args.json)


if __name__ == "__main__":
    main()
