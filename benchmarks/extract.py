"""Benchmark feature extraction on this machine and check the project's performance targets.

    python benchmarks/extract.py             # ResNet50, 1000 images at 139 px (~15 min, 2 cores)
    python benchmarks/extract.py --repro     # also time `dvc repro`: full vs head-only change
    python benchmarks/extract.py --sweep 8,16,32,64   # also the forward pass by batch size
    python benchmarks/extract.py --images 64 --img-size 64 --rounds 1   # a quick look

Measured in one run, on the same random images (random weights: speed and memory do not
depend on them):
  1. images/s of the project's extract (keras_bottleneck.features.extract: .npy in, .npy out)
     with the openvino engine at --precision, and with the tensorflow engine (float32);
  2. images/s of the bare engines on in-memory batches: OpenVINO driven as extract drives it
     (one async infer request per stream in flight), OpenVINO called synchronously batch after
     batch, and TensorFlow's tf.function (float32, what extract ran before the engines): the
     ceilings for 1;
  3. images/s of the original's way: resize every image, preprocess_input, one model.predict;
  4. the extract stage as a whole, start-up included, in its own process at the project's
     params (engine openvino), at N and 8N images, for its peak resident memory and its speed
     against 2.'s TensorFlow float32 forward pass; and at N with extract.precision bfloat16;
  5. disk used by the features in the workspace plus the DVC cache, vs their bytes;
  6. with --repro: seconds of a full `dvc repro` vs after a change of a head param.
1 to 3 run in interleaved rounds, each after a warm-up (graph tracing or compiling, reported
apart), so that other processes' load hits all of them alike; the ratios are the medians of the
per-round ratios. TensorFlow's bfloat16 option is process-wide: it is not measured here.
Prints a table, then the JSON (also written to --json).
"""
import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

import _pipeline

from keras_bottleneck.params import Backbone, Extract
from keras_bottleneck import backbones, engines
from keras_bottleneck.testing.stores import extracted
from keras_bottleneck.images import resize

TARGETS = {  # name: (figure, comparison, bound)
    "extract_vs_fastest_bare_engine": ("throughput.ratios.extract_vs_fastest_bare_engine", ">=",
                                       0.9),
    "extract_vs_original": ("throughput.ratios.extract_vs_original", ">=", 1.0),
    "stage_vs_tensorflow_forward": ("stage.default_vs_tensorflow_forward", ">=", 1.2),
    "stage_bfloat16_vs_tensorflow_forward": ("stage.bfloat16_vs_tensorflow_forward", ">=", 2.0),
    "memory_8n_vs_n": ("memory.ratio", "<=", 1.15),
    "disk_vs_feature_bytes": ("disk.ratio", "<=", 1.1),
    "repro_head_change_vs_full": ("repro.head_change_vs_full", "<=", 0.15),
}
METHODS = {
    "extract": "project extract, openvino engine (.npy -> .npy)",
    "extract_tensorflow": "project extract, tensorflow engine, float32",
    "openvino": "bare OpenVINO, async requests",
    "openvino_sync": "bare OpenVINO, one call after another",
    "forward": "bare TensorFlow forward, tf.function, float32",
    "original": "original: resize all, preprocess_input, predict",
}
BARE_ENGINES = ("openvino", "forward")


def parse_args():
    defaults = yaml.safe_load((_pipeline.REPO_ROOT / "params.yaml").read_text())
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="N, images per measurement")
    parser.add_argument("--img-size", type=int, default=defaults["prepare"]["img_size"])
    parser.add_argument("--backbone", default=defaults["backbone"]["name"])
    parser.add_argument("--batch-size", type=int, default=defaults["extract"]["batch_size"])
    parser.add_argument("--dtype", default=defaults["extract"]["dtype"])
    parser.add_argument("--precision", default=defaults["extract"]["precision"],
                        help="of the openvino engine in the throughput rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds")
    parser.add_argument("--stage-images", type=int, default=2000,
                        help="N of the extract stage's runs (N and 8N, + 10%% test images)")
    parser.add_argument("--sweep", help="also time the bare forward pass at these batch "
                        "sizes, e.g. 8,16,32,64, to choose extract.batch_size")
    parser.add_argument("--repro", action="store_true",
                        help="time dvc repro (a full run, then runs after head param changes) "
                        "on --images at the project's params: ~20 min more at the defaults")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args()


def timed(run):
    """(wall seconds, CPU seconds of this process's threads) of run()."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def write_resized(sources, img_size, path):
    """The images resized as preprocess does, as one .npy (a few hundred images: it fits)."""
    np.save(path, np.stack([resize(image, img_size) for image in sources]))


def batches_of(path, batch_size):
    """The rows of a .npy, batch by batch."""
    rows = np.load(path)
    return [rows[start:start + batch_size] for start in range(0, len(rows), batch_size)]


def original_way(model, sources, img_size, preprocess_input):
    """The original notebook: everything resized and preprocessed in memory, then predict."""
    resized = np.array([resize(image, img_size) for image in sources])
    return model.predict(preprocess_input(resized.astype(np.float32)), verbose=0)


def forward_runs(model, *batch_lists):
    """For each list of in-memory batches, a run of one compiled forward function over it."""
    import tensorflow as tf
    forward = tf.function(lambda images: model(images, training=False))

    def over(batches):
        def run():
            for batch in batches:
                np.asarray(forward(batch))
        return run
    return [over(batches) for batches in batch_lists]


def openvino_runs(engine, *batch_lists):
    """For each list of in-memory batches: a run of `engine` driven as extract drives it, and
    one calling the compiled model synchronously, batch after batch."""
    def driven(batches):
        return lambda: [None for _ in engine.outputs(iter(batches))]

    def synchronous(batches):
        return lambda: [engine.compiled(batch) for batch in batches]
    return [(driven(batches), synchronous(batches)) for batches in batch_lists]


def measure_throughput(args, workdir):
    """Images/s of each method, in rounds whose order rotates; warm-ups timed apart."""
    backbone = Backbone(name=args.backbone, weights="none", alpha=1.0)
    settings = Extract(engine="openvino", precision=args.precision, pool="none",
                       batch_size=args.batch_size, dtype=args.dtype)
    converted = workdir / "backbone"
    converted.mkdir()
    started = time.perf_counter()
    engines.write_backbone(backbone, settings, args.img_size, converted)
    convert_seconds = time.perf_counter() - started
    openvino = engines.load(converted, backbone, settings, args.img_size)
    model = backbones.build_for_extraction(backbone, args.img_size)
    extractor = engines.extractor(model, args.backbone, "none")
    tensorflow = engines.TensorFlowEngine(extractor, args.batch_size)
    sources = _pipeline.random_images(args.images, _pipeline.SOURCE_SIZE, seed=0)
    images_path, warm_path = workdir / "images.npy", workdir / "warm.npy"
    write_resized(sources, args.img_size, images_path)
    # One full batch and a short one: every shape a run meets.
    warm_count = min(args.batch_size + 1, len(sources))
    write_resized(sources[:warm_count], args.img_size, warm_path)
    preprocess = backbones.preprocess_function(args.backbone)
    batches = [preprocess(batch) for batch in batches_of(images_path, args.batch_size)]
    warm_batches = [preprocess(batch) for batch in batches_of(warm_path, args.batch_size)]
    # What the OpenVINO model takes: pixels (it preprocesses), in full batches.
    pixels = [np.asarray(np.resize(batch, (args.batch_size,) + batch.shape[1:]), np.float32)
              for batch in batches_of(images_path, args.batch_size)]
    warm_pixels = pixels[:2]
    preprocess_input = backbones.preprocess_input(args.backbone)

    def extract_to(engine, images):
        def run():  # into a store of its own each time, as the stage from scratch
            shutil.rmtree(workdir / "features", ignore_errors=True)
            extracted(engine, images, workdir / "features", args.dtype)
        return run
    runs, warm_ups = {}, {}
    runs["extract"], warm_ups["extract"] = (extract_to(openvino, images_path),
                                            extract_to(openvino, warm_path))
    runs["extract_tensorflow"], warm_ups["extract_tensorflow"] = (
        extract_to(tensorflow, images_path), extract_to(tensorflow, warm_path))
    (runs["openvino"], runs["openvino_sync"]), (warm_ups["openvino"],
                                                warm_ups["openvino_sync"]) = openvino_runs(
        openvino, pixels, warm_pixels)
    runs["forward"], warm_ups["forward"] = forward_runs(model, batches, warm_batches)
    runs["original"] = lambda: original_way(model, sources, args.img_size, preprocess_input)
    warm_ups["original"] = lambda: original_way(model, sources[:warm_count], args.img_size,
                                                preprocess_input)
    warm_up_seconds = {name: round(timed(warm)[0], 2) for name, warm in warm_ups.items()}
    # The original's figure includes resizing, which the project does once, in `preprocess`.
    resize_seconds = timed(lambda: [resize(image, args.img_size) for image in sources])[0]

    names, rounds = list(runs), []
    for index in range(args.rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        measured = {}
        for name in order:
            wall, cpu = timed(runs[name])
            measured[name] = {"images_per_s": args.images / wall,
                              "images_per_cpu_s": args.images / cpu}
        rounds.append(measured)
        _pipeline.progress(f"round {index + 1}/{args.rounds}: " + ", ".join(
            f"{name} {m['images_per_s']:.1f}" for name, m in measured.items()) + " img/s")

    def median(method, key="images_per_s"):
        return round(statistics.median(r[method][key] for r in rounds), 2)

    def ratio(method, *others, key="images_per_s"):
        """Median over rounds of `method`'s speed / the best of `others` in the same round."""
        return round(statistics.median(
            r[method][key] / max(r[other][key] for other in others) for r in rounds), 3)
    return {
        "images": args.images, "rounds": args.rounds, "precision": args.precision,
        "openvino_jobs": openvino.jobs, "convert_seconds": round(convert_seconds, 2),
        "images_per_s": {name: median(name) for name in names},
        "images_per_s_each_round": {name: [round(r[name]["images_per_s"], 2) for r in rounds]
                                    for name in names},
        "images_per_cpu_s": {name: median(name, "images_per_cpu_s") for name in names},
        "warm_up_seconds": warm_up_seconds,
        "original_resize_seconds": round(resize_seconds, 2),
        "ratios": {
            "extract_vs_fastest_bare_engine": ratio("extract", *BARE_ENGINES),
            "extract_vs_bare_openvino": ratio("extract", "openvino"),
            "extract_vs_tensorflow_forward": ratio("extract", "forward"),
            "extract_tensorflow_vs_tensorflow_forward": ratio("extract_tensorflow", "forward"),
            "openvino_vs_tensorflow_forward": ratio("openvino", "forward"),
            "openvino_async_vs_sync": ratio("openvino", "openvino_sync"),
            "extract_vs_original": ratio("extract", "original"),
            # Work per CPU-second barely depends on the other processes' load.
            "extract_vs_fastest_bare_engine_per_cpu_s": ratio(
                "extract", *BARE_ENGINES, key="images_per_cpu_s"),
        },
    }


def measure_batch_sizes(args, workdir):
    """Images/s of the bare compiled forward pass at each batch size of --sweep, interleaved."""
    sizes = [int(size) for size in args.sweep.split(",")]
    model = backbones.build(Backbone(name=args.backbone, weights="none", alpha=1.0),
                            args.img_size)
    preprocess = backbones.preprocess_function(args.backbone)
    images_path = workdir / "images.npy"  # written by measure_throughput
    runs = {size: forward_runs(model, [preprocess(batch) for batch in
                                       batches_of(images_path, size)])[0]
            for size in sizes}
    for run in runs.values():  # warm-up: trace every shape
        run()
    speeds = {size: [] for size in sizes}
    for index in range(args.rounds):
        for size in sizes[index % len(sizes):] + sizes[:index % len(sizes)]:
            speeds[size].append(args.images / timed(runs[size])[0])
    return {str(size): round(statistics.median(speeds[size]), 2) for size in sizes}


def stage_settings(args):
    return {"backbone.name": args.backbone, "backbone.weights": "none",
            "prepare.img_size": args.img_size, "extract.batch_size": args.batch_size,
            "extract.dtype": args.dtype}


def measure_stage(args, workdir, forward_images_per_s):
    """The extract stage as a whole (its own process, start-up included) at the project's
    params: at N and 8N images for its peak memory, its speed at N against the bare TensorFlow
    float32 forward pass measured in this run; and at N with extract.precision bfloat16."""
    settings = stage_settings(args)
    runs = [_pipeline.peak_memory_of_extract(workdir, n, args.img_size, settings)
            for n in (args.stage_images, 8 * args.stage_images)]
    bfloat16 = _pipeline.peak_memory_of_extract(workdir, args.stage_images, args.img_size,
                                                {**settings, "extract.precision": "bfloat16"})
    native = engines.native_bfloat16()

    def speed(run):
        return (run["train_images"] + run["test_images"]) / run["extract_seconds"]
    return {
        "memory": {"runs": runs,
                   "ratio": round(runs[1]["peak_rss_bytes"] / runs[0]["peak_rss_bytes"], 3)},
        "stage": {
            "images": runs[0]["train_images"] + runs[0]["test_images"],
            "default": runs[0], "bfloat16": bfloat16, "native_bfloat16": native,
            "default_images_per_s": round(speed(runs[0]), 2),
            "bfloat16_images_per_s": round(speed(bfloat16), 2),
            "tensorflow_forward_images_per_s": forward_images_per_s,
            "default_vs_tensorflow_forward": round(speed(runs[0]) / forward_images_per_s, 3),
            # The target is for CPUs that compute in bfloat16; elsewhere it is not measured.
            "bfloat16_vs_tensorflow_forward": round(speed(bfloat16) / forward_images_per_s, 3)
            if native else None,
            "bfloat16_vs_tensorflow_forward_here": round(speed(bfloat16) / forward_images_per_s,
                                                         3)}}


def measure_pipeline(args, workdir):
    """Disk used by the features after `dvc repro` in a project copy and, with --repro, the
    seconds of a full run vs a run after a change of a head param."""
    project = _pipeline.DvcProject(workdir / "project", args.images, stage_settings(args))
    figures = {}
    if not args.repro:
        project.timed_repro("extract")
    else:
        full = project.timed_repro()
        epochs = {stage: project.metrics(stage)["seconds_per_epoch"]
                  for stage in ("train_head", "train_frozen")}
        params = project.params()
        # train_head.epochs is read by train_head alone: `dvc repro` reruns nothing else.
        project.set_params({"train_head.epochs": params["train_head"]["epochs"] + 1})
        head_epochs = project.timed_repro()
        # head.* is shared by both training stages (the same head, trained two ways): a bare
        # `dvc repro` retrains train_frozen too; `dvc repro train_head` iterates on the head.
        dropout = params["head"]["dropout"]
        project.set_params({"head.dropout": round(dropout + 0.05, 3)})
        head_only = project.timed_repro("train_head")
        project.set_params({"head.dropout": round(dropout + 0.1, 3)})
        everything = project.timed_repro()
        figures["repro"] = {
            "images": args.images, "test_images": _pipeline.held_out_count(args.images),
            "full": full,
            "train_head_epochs_change_repro": head_epochs,
            "head_dropout_change_repro_train_head": head_only,
            "head_dropout_change_repro": everything,
            "head_change_vs_full": round(head_epochs["seconds"] / full["seconds"], 3),
            "head_dropout_repro_train_head_vs_full": round(
                head_only["seconds"] / full["seconds"], 3),
            "head_dropout_repro_vs_full": round(everything["seconds"] / full["seconds"], 3),
            "seconds_per_epoch": epochs,
        }
    figures["disk"] = project.disk_usage()
    figures["disk"]["as_copies"] = project.disk_usage_as_copies()
    return figures


def print_table(figures):
    conditions, throughput = figures["conditions"], figures["throughput"]
    print(f"\n{conditions['backbone']} at {conditions['img_size']} px, batch "
          f"{conditions['batch_size']}, {conditions['dtype']} features, openvino engine at "
          f"{conditions['precision']}; {conditions['cpus']} CPUs "
          f"({conditions['cpu']}), load average {conditions['load_average_start']} -> "
          f"{conditions['load_average_end']}")
    print(f"\nThroughput, {throughput['images']} images, median of {throughput['rounds']} "
          "interleaved rounds:")
    print(f"  {'method':50} {'img/s':>7} {'img/CPU-s':>10} {'warm-up s':>10}")
    for name, label in METHODS.items():
        print(f"  {label:50} {throughput['images_per_s'][name]:7.1f} "
              f"{throughput['images_per_cpu_s'][name]:10.1f} "
              f"{throughput['warm_up_seconds'][name]:10.1f}")
    ratios = throughput["ratios"]
    print(f"  extract / fastest bare engine: {ratios['extract_vs_fastest_bare_engine']:.3f} "
          f"(per CPU-second {ratios['extract_vs_fastest_bare_engine_per_cpu_s']:.3f}); "
          f"/ bare TensorFlow: {ratios['extract_vs_tensorflow_forward']:.3f}; OpenVINO async / "
          f"sync: {ratios['openvino_async_vs_sync']:.3f}; extract / original: "
          f"{ratios['extract_vs_original']:.3f} (the original's time includes "
          f"{throughput['original_resize_seconds']:.1f} s of resizing); converting the "
          f"backbone once: {throughput['convert_seconds']:.1f} s")
    stage = figures["stage"]
    print(f"\nThe extract stage as a whole (start-up included), {stage['images']} images: "
          f"default {stage['default_images_per_s']:.1f} img/s "
          f"(x{stage['default_vs_tensorflow_forward']:.2f} the bare TensorFlow float32 forward), "
          f"bfloat16 {stage['bfloat16_images_per_s']:.1f} img/s "
          f"(x{stage['bfloat16_vs_tensorflow_forward_here']:.2f}; this CPU computes in bfloat16 "
          f"natively: {stage['native_bfloat16']})")
    if "batch_size_sweep" in figures:
        print("  bare forward by batch size: " + ", ".join(
            f"{size}: {speed:.1f}" for size, speed in figures["batch_size_sweep"].items()))
    memory = figures["memory"]["runs"]
    print("\nPeak resident memory of the extract stage: " + ", ".join(
        f"{run['train_images']}+{run['test_images']} images {run['peak_rss_bytes'] / 2**20:.0f} MB"
        for run in memory))
    disk = figures["disk"]
    print(f"\nFeatures: {disk['feature_bytes'] / 2**20:.1f} MB; workspace + DVC cache "
          f"{disk['disk_bytes'] / 2**20:.1f} MB ({disk['workspace_link']}, read-only: "
          f"{disk['workspace_read_only']}); as copies (DVC's default on ext4) "
          f"{disk['as_copies']['disk_bytes'] / 2**20:.1f} MB")
    if "repro" in figures:
        repro = figures["repro"]
        print(f"\ndvc repro, {repro['images']}+{repro['test_images']} images: full run "
              f"{repro['full']['seconds']:.0f} s; `dvc repro` after train_head.epochs +1: "
              f"{repro['train_head_epochs_change_repro']['seconds']:.0f} s; after a head.dropout "
              f"change: `dvc repro train_head` "
              f"{repro['head_dropout_change_repro_train_head']['seconds']:.0f} s, `dvc repro` "
              f"{repro['head_dropout_change_repro']['seconds']:.0f} s "
              f"({', '.join(repro['head_dropout_change_repro']['stages_run'])}); "
              "seconds per epoch: "
              + ", ".join(f"{stage} {s:.1f}" for stage, s in repro["seconds_per_epoch"].items()))
    _pipeline.print_targets(figures["targets"])


def main():
    args = parse_args()
    figures = {"conditions": _pipeline.conditions(
        backbone=args.backbone, img_size=args.img_size, batch_size=args.batch_size,
        dtype=args.dtype, precision=args.precision, weights="random")}
    with tempfile.TemporaryDirectory(prefix="keras-bottleneck-benchmark-") as tmp:
        workdir = Path(tmp)
        _pipeline.progress(f"throughput: {args.rounds} rounds of {len(METHODS)} methods on "
                           f"{args.images} images")
        figures["throughput"] = measure_throughput(args, workdir)
        if args.sweep:
            _pipeline.progress(f"bare forward pass at batch sizes {args.sweep}")
            figures["batch_size_sweep"] = measure_batch_sizes(args, workdir)
        _pipeline.progress("the extract stage at N and 8N images, and at N in bfloat16")
        figures.update(measure_stage(args, workdir,
                                     figures["throughput"]["images_per_s"]["forward"]))
        _pipeline.progress("dvc repro in a project copy" + (": full run, then head changes"
                                                            if args.repro else " (up to extract)"))
        figures.update(measure_pipeline(args, workdir))
    _pipeline.report(figures, TARGETS, print_table, args.json)


if __name__ == "__main__":
    main()
