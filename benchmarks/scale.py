"""Benchmark the pipeline at scale and check the project's memory and speed targets.

    python benchmarks/scale.py          # N = 1000 at 139 px, ResNet50; 200 photos (~25 min, 2 cores)
    python benchmarks/scale.py --images 40 --img-size 32 --backbone vgg16 --photos 6 \\
        --photo-size 800x600           # a quick look

Measured in one run:
  1. peak resident memory of every stage (fetch, preprocess, extract, train_head,
     train_frozen), each in its own process, on a folder of N and of 8N random images (+10%
     test images); training stages run --epochs epochs (memory does not grow with epochs);
  2. train_head's seconds per epoch reading the features from disk batch by batch vs holding
     them in memory (the former way), on the N features, in interleaved rounds;
  3. a folder of 12-megapixel JPEG photos (made here): peak memory of fetch and preprocess,
     data/raw's size vs the folder's, preprocess's throughput vs a naive single-process PIL
     open -> convert -> resize of the same files, and how far preprocess's reduced-scale JPEG
     decode is from a full decode followed by the resize (mean absolute difference, 0-255).
Random weights: speed and memory do not depend on them. Prints a table, then the JSON (also
written to --json).
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

import _pipeline

from keras_bottleneck import params as params_file, training
from keras_bottleneck.datasets import split_inputs
from keras_bottleneck.heads import feature_head_model
from keras_bottleneck.images import decode_resized, load_rgb, resize
from keras_bottleneck.testing.synthetic import photo

STAGES = ("fetch", "preprocess", "backbone", "extract", "train_head", "train_frozen")
TARGETS = {  # name: (figure, comparison, bound)
    **{f"memory_8n_vs_n_{stage}": (f"memory.ratios.{stage}", "<=", 1.15) for stage in STAGES},
    "train_head_disk_vs_memory": ("train_head_epoch.disk_vs_memory", "<=", 1.2),
    "train_head_index_vs_single_file": ("train_head_epoch.index_vs_single_file", ">=", 0.9),
    "photos_fetch_peak_gib": ("photos.fetch.peak_gib", "<=", 1.0),
    "photos_preprocess_peak_gib": ("photos.preprocess.peak_gib", "<=", 1.0),
    "photos_raw_vs_folder_bytes": ("photos.raw_vs_folder_bytes", "<=", 1.05),
    "photos_preprocess_vs_naive": ("photos.preprocess_vs_naive", ">=", 3.0),
}


def parse_args():
    defaults = yaml.safe_load((_pipeline.REPO_ROOT / "params.yaml").read_text())
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="N, train images")
    parser.add_argument("--img-size", type=int, default=defaults["prepare"]["img_size"])
    parser.add_argument("--backbone", default=defaults["backbone"]["name"])
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the training stages")
    parser.add_argument("--timing-epochs", type=int, default=4,
                        help="epochs per round of the train_head timing (the first is dropped)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the train_head timing")
    parser.add_argument("--photos", type=int, default=200, help="photos in the photo folder")
    parser.add_argument("--photo-size", default="4000x3000", help="WIDTHxHEIGHT of the photos")
    parser.add_argument("--skip-8n", action="store_true",
                        help="run the stages on N images only: no memory ratios, the rest in a "
                             "fraction of the time")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args()


def settings(args):
    return {"backbone.name": args.backbone, "backbone.weights": "none",
            "prepare.img_size": args.img_size, "train_head.epochs": args.epochs,
            "train_frozen.epochs": args.epochs}


def measure_stages(args, workdir):
    """Peak memory and seconds of every stage on N and 8N images; the N project is kept for
    the train_head timing."""
    runs, projects = {}, {}
    counts = (args.images,) if args.skip_8n else (args.images, 8 * args.images)
    for count in counts:
        _pipeline.progress(f"every stage on {count} + {_pipeline.held_out_count(count)} images")
        project = _pipeline.DvcProject(workdir / f"stages-{count}", count, settings(args))
        runs[count] = {stage: _pipeline.run_with_peak(project.root, stage) for stage in STAGES}
        projects[count] = project
    if args.skip_8n:
        return projects[args.images], {"images": [args.images], "peak_rss_bytes": {
            stage: [runs[args.images][stage]["peak_rss_bytes"]] for stage in STAGES}}
    small, large = (runs[count] for count in counts)
    return projects[args.images], {
        "images": [args.images, 8 * args.images],
        "peak_rss_bytes": {stage: [small[stage]["peak_rss_bytes"], large[stage]["peak_rss_bytes"]]
                           for stage in STAGES},
        "main_process_peak_rss_bytes": {
            stage: [small[stage]["main_process_peak_rss_bytes"],
                    large[stage]["main_process_peak_rss_bytes"]] for stage in STAGES},
        "seconds": {stage: [small[stage]["seconds"], large[stage]["seconds"]] for stage in STAGES},
        "ratios": {stage: round(large[stage]["peak_rss_bytes"] / small[stage]["peak_rss_bytes"], 3)
                   for stage in STAGES},
    }


def epoch_seconds(model_factory, data, epochs):
    """Seconds of each epoch after the first (which traces the graph) of a fresh model."""
    import keras
    model = model_factory()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seconds, started = [], [0.0]
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.__setitem__(0, time.perf_counter()),
        on_epoch_end=lambda epoch, logs: seconds.append(time.perf_counter() - started[0]))
    model.fit(data, epochs=epochs, verbose=0, callbacks=[timer])
    return seconds[1:]


def measure_train_head_epoch(args, project):
    """train_head's seconds per epoch, features from disk vs in memory, same process."""
    import keras
    import tensorflow as tf
    params = params_file.load(project.root / "params.yaml")
    rows, labels = split_inputs(project.root / "data" / "features")["train"]
    features = rows[:]
    single_file = project.root / "single_file_features.npy"  # the layout before chunks
    np.save(single_file, features)
    batch_size = params.train.batch_size

    def model():
        keras.utils.set_random_seed(0)
        return feature_head_model(features.shape[1:], params.head, int(labels.max()) + 1)

    def as_float32(data):
        return data.map(lambda x, y: (tf.cast(x, tf.float32), y))
    ways = {"memory": lambda: as_float32(training.in_memory_dataset(features, labels, batch_size,
                                                                    shuffle_seed=0)),
            "disk": lambda: training.dataset(rows, labels, batch_size,
                                             lambda x: tf.cast(x, tf.float32), shuffle_seed=0),
            "single_file": lambda: training.dataset(single_file, labels, batch_size,
                                                    lambda x: tf.cast(x, tf.float32),
                                                    shuffle_seed=0)}
    seconds = {way: [] for way in ways}
    for index in range(args.rounds):
        for way in (list(ways) if index % 2 == 0 else list(ways)[::-1]):
            seconds[way] += epoch_seconds(model, ways[way](), args.timing_epochs)
    median = {way: statistics.median(values) for way, values in seconds.items()}
    return {"images": len(labels), "feature_shape": list(features.shape[1:]),
            "feature_bytes": int(features.nbytes),
            "seconds_per_epoch": {way: round(value, 3) for way, value in median.items()},
            "disk_vs_memory": round(median["disk"] / median["memory"], 3),
            # speed through the chunks' index / speed from one .npy (seconds the other way)
            "index_vs_single_file": round(median["single_file"] / median["disk"], 3)}


def write_photos(root, count, size):
    """train/<a|b>/*.jpg and test/<a|b>/*.jpg, the last tenth (two at least) for test; their
    paths."""
    paths = []
    for i in range(count):
        split = "test" if i >= count - max(2, count // 10) else "train"
        path = Path(root) / split / "ab"[i % 2] / f"{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo(*size, seed=i).save(path, quality=90)
        paths.append(path)
    return paths


def naive_preprocess(paths, img_size):
    """What a single-process script would do: open, convert, resize, one file after another."""
    for path in paths:
        with Image.open(path) as image:
            np.asarray(image.convert("RGB").resize((img_size, img_size), Image.BICUBIC))


def measure_photos(args, workdir):
    size = tuple(int(side) for side in args.photo_size.split("x"))
    _pipeline.progress(f"{args.photos} photos of {size[0]}x{size[1]}")
    paths = write_photos(workdir / "photos", args.photos, size)
    folder_bytes = sum(path.stat().st_size for path in paths)
    tests = sum(1 for path in paths if path.parts[-3] == "test")
    project = _pipeline.DvcProject(workdir / "photo-project", len(paths) - tests, settings(args),
                                   dataset=workdir / "photos", test_count=tests)
    runs = {stage: _pipeline.run_with_peak(project.root, stage) for stage in ("fetch",
                                                                               "preprocess")}
    raw = project.root / "data" / "raw"
    raw_bytes = sum(path.stat().st_size for path in raw.rglob("*") if path.is_file())
    started = time.perf_counter()
    naive_preprocess(paths, args.img_size)
    naive_seconds = time.perf_counter() - started
    sample = paths[:10]
    differences = [np.abs(decode_resized(path.read_bytes(), args.img_size).astype(int)
                          - resize(load_rgb(path), args.img_size)).mean() for path in sample]
    for run in runs.values():
        run["peak_gib"] = round(run["peak_rss_bytes"] / 2**30, 3)
        run["images_per_s"] = round(len(paths) / run["seconds"], 1)
    return {
        "photos": len(paths), "size": list(size), "folder_bytes": folder_bytes,
        "decoded_bytes": len(paths) * size[0] * size[1] * 3, "raw_bytes": raw_bytes,
        "raw_vs_folder_bytes": round(raw_bytes / folder_bytes, 4), **runs,
        "naive_images_per_s": round(len(paths) / naive_seconds, 1),
        "preprocess_vs_naive": round(naive_seconds / runs["preprocess"]["seconds"], 2),
        "reduced_decode_mean_abs_difference": {"mean": round(float(np.mean(differences)), 3),
                                               "max": round(float(np.max(differences)), 3),
                                               "photos": len(sample)},
    }


def print_table(figures):
    conditions = figures["conditions"]
    print(f"\n{conditions['backbone']} at {conditions['img_size']} px, random weights, "
          f"{conditions['epochs']} epoch(s) per training stage; {conditions['cpus']} CPUs "
          f"({conditions['cpu']}), load average {conditions['load_average_start']} -> "
          f"{conditions['load_average_end']}")
    memory = figures["memory"]
    if len(memory["images"]) == 1:
        print(f"\nPeak resident memory by stage, {memory['images'][0]} train images: " +
              ", ".join(f"{stage} {peaks[0] / 2**20:.0f} MiB"
                        for stage, peaks in memory["peak_rss_bytes"].items()))
    else:
        print(f"\nPeak resident memory by stage, {memory['images'][0]} vs {memory['images'][1]} "
              "train images (+10% test):")
    for stage in STAGES if len(memory["images"]) == 2 else ():
        peaks = memory["peak_rss_bytes"][stage]
        seconds = memory["seconds"][stage]
        print(f"  {stage:14} {peaks[0] / 2**20:7.0f} MiB {peaks[1] / 2**20:7.0f} MiB  "
              f"x{memory['ratios'][stage]:.3f}   ({seconds[0]:.0f} s, {seconds[1]:.0f} s)")
    epoch = figures["train_head_epoch"]
    print(f"\ntrain_head seconds per epoch on {epoch['images']} features: in memory "
          f"{epoch['seconds_per_epoch']['memory']:.3f}, from disk "
          f"{epoch['seconds_per_epoch']['disk']:.3f} (x{epoch['disk_vs_memory']:.3f}); from "
          f"one .npy {epoch['seconds_per_epoch']['single_file']:.3f} (chunks' speed "
          f"x{epoch['index_vs_single_file']:.3f} of it)")
    photos = figures["photos"]
    print(f"\n{photos['photos']} photos of {photos['size'][0]}x{photos['size'][1]}: folder "
          f"{photos['folder_bytes'] / 2**20:.0f} MiB, data/raw {photos['raw_bytes'] / 2**20:.0f} "
          f"MiB (x{photos['raw_vs_folder_bytes']}), decoded they would be "
          f"{photos['decoded_bytes'] / 2**30:.1f} GiB")
    for stage in ("fetch", "preprocess"):
        print(f"  {stage:10} peak {photos[stage]['peak_gib']:.2f} GiB, "
              f"{photos[stage]['seconds']:.1f} s, {photos[stage]['images_per_s']:.1f} img/s")
    quality = photos["reduced_decode_mean_abs_difference"]
    print(f"  naive PIL open/convert/resize: {photos['naive_images_per_s']:.1f} img/s; preprocess "
          f"x{photos['preprocess_vs_naive']:.2f}; reduced-scale decode vs full decode + resize: "
          f"mean absolute difference {quality['mean']:.3f} (worst photo {quality['max']:.3f}) "
          "grey levels of 255")
    _pipeline.print_targets(figures["targets"])


def main():
    args = parse_args()
    figures = {"conditions": _pipeline.conditions(backbone=args.backbone, img_size=args.img_size,
                                                  epochs=args.epochs, weights="random")}
    with tempfile.TemporaryDirectory(prefix="keras-bottleneck-scale-") as tmp:
        workdir = Path(tmp)
        project, figures["memory"] = measure_stages(args, workdir)
        _pipeline.progress("train_head epochs: features from disk vs in memory")
        figures["train_head_epoch"] = measure_train_head_epoch(args, project)
        figures["photos"] = measure_photos(args, workdir)
    _pipeline.report(figures, TARGETS, print_table, args.json)


if __name__ == "__main__":
    main()
