"""Benchmark incremental processing: what adding a few images costs, against a full run.

    python benchmarks/incremental.py        # N = 2000 at 139 px, ResNet50, 20 added (~5 min)
    python benchmarks/incremental.py --photo-size 1600x1200   # the same on photo-like JPEGs
    python benchmarks/incremental.py --images 40 --added 4 --img-size 64 --backbone vgg16

In a project copy on a folder of N random 32 px PNGs, or of photo-like JPEGs (+10% test
images): seconds of `dvc repro extract` from scratch, then after adding --added train images
(and raising prepare.train_count to match); each time, the seconds of each stage's script and
what is left, DVC's own work, and how many images fetch checked, preprocess decoded and the
backbone ran on (from metrics/*.json); and the bytes the reuse keys add to the features.
Random weights: the cost does not depend on them. Prints a table, then the JSON (also written to
--json).
"""
import argparse
import tempfile
from pathlib import Path

import yaml

import _pipeline

TARGETS = {
    "repro_after_adding_vs_full": ("repro.added_vs_full", "<=", 0.15),
    "backbone_images_after_adding": ("repro.added.backbone_images", "<=", 40),
    "store_bytes_vs_feature_bytes": ("disk.store_vs_features", "<=", 1.1),
}


def parse_args():
    defaults = yaml.safe_load((_pipeline.REPO_ROOT / "params.yaml").read_text())
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="N, train images at first")
    parser.add_argument("--added", type=int, default=20, help="train images added")
    parser.add_argument("--img-size", type=int, default=defaults["prepare"]["img_size"])
    parser.add_argument("--backbone", default=defaults["backbone"]["name"])
    parser.add_argument("--photo-size", help="WIDTHxHEIGHT of photo-like JPEGs (made here) "
                        "instead of 32 px PNGs")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args()


def add_images(folder, count, photo_size=None, seed=1000):
    """`count` new images (see _pipeline.save_images) spread over the train class folders."""
    classes = sorted(path for path in (Path(folder) / "train").iterdir())
    _pipeline.save_images(classes, count, seed, photo_size, prefix="added_")


STAGES = ("fetch", "preprocess", "backbone", "extract")


def timed_repro(project):
    run = project.timed_repro("extract")
    metrics = {stage: project.metrics(stage) for stage in STAGES}
    # The backbone stage runs once, not after adding images: its figure is the first run's.
    stage_seconds = {stage: metrics[stage]["seconds"] for stage in STAGES
                     if stage in run["stages_run"]}
    return {**run, "stage_seconds": stage_seconds,
            "dvc_seconds": round(run["seconds"] - sum(stage_seconds.values()), 1),
            "checked_images": metrics["fetch"]["checked_images"],
            "decoded_images": metrics["preprocess"]["decoded_images"],
            "backbone_images": metrics["extract"]["backbone_images"],
            "reused_images": metrics["extract"]["reused_images"]}


def measure(args, workdir):
    settings = {"backbone.name": args.backbone, "backbone.weights": "none",
                "prepare.img_size": args.img_size}
    photo_size = args.photo_size and tuple(int(side) for side in args.photo_size.split("x"))
    images = workdir / "images"  # outside the project: photos would slow its git commit
    _pipeline.write_folder_dataset(images, args.images, photo_size=photo_size)
    project = _pipeline.DvcProject(workdir / "project", args.images, settings, dataset=images)
    _pipeline.progress(f"dvc repro extract from scratch: {args.images} + "
                       f"{_pipeline.held_out_count(args.images)} images")
    full = timed_repro(project)
    add_images(images, args.added, photo_size)
    project.set_params({"prepare.train_count": args.images + args.added})
    _pipeline.progress(f"dvc repro extract after adding {args.added} images")
    added = timed_repro(project)
    features = project.root / "data" / "features"
    feature_bytes = sum(path.stat().st_size for path in features.glob("*_features.npy"))
    store_bytes = sum(path.stat().st_size for path in features.glob("*_keys.npy")) + \
        (features / "fingerprint.json").stat().st_size
    return {
        "repro": {"images": args.images, "added_images": args.added, "full": full,
                  "added": added, "added_vs_full": round(added["seconds"] / full["seconds"], 3)},
        "disk": {"feature_bytes": feature_bytes, "keys_and_fingerprint_bytes": store_bytes,
                 "store_vs_features": round((feature_bytes + store_bytes) / feature_bytes, 4)},
    }


def print_table(figures):
    conditions, repro, disk = figures["conditions"], figures["repro"], figures["disk"]
    print(f"\n{conditions['backbone']} at {conditions['img_size']} px, random weights, on "
          f"{conditions['images']} images; {conditions['cpus']} CPUs ({conditions['cpu']})")
    for name, label in (("full", f"from scratch, {repro['images']} train images"),
                        ("added", f"after adding {repro['added_images']}")):
        run = repro[name]
        print(f"  dvc repro extract {label:32} {run['seconds']:7.1f} s  backbone ran on "
              f"{run['backbone_images']} images, reused {run['reused_images']} "
              f"({', '.join(run['stages_run'])})")
        scripts = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds
                            in run["stage_seconds"].items())
        print(f"    seconds: {scripts}, DVC {run['dvc_seconds']:.1f}; fetch checked "
              f"{run['checked_images']} images, preprocess decoded {run['decoded_images']}")
    print(f"  ratio {repro['added_vs_full']:.3f}; features {disk['feature_bytes'] / 2**20:.1f} "
          f"MiB, reuse keys {disk['keys_and_fingerprint_bytes'] / 2**10:.1f} KiB "
          f"(x{disk['store_vs_features']})")
    _pipeline.print_targets(figures["targets"])


def main():
    args = parse_args()
    figures = {"conditions": _pipeline.conditions(backbone=args.backbone,
                                                  img_size=args.img_size, weights="random",
                                                  images=args.photo_size or "32x32 PNG")}
    with tempfile.TemporaryDirectory(prefix="keras-bottleneck-incremental-") as tmp:
        figures.update(measure(args, Path(tmp)))
    _pipeline.report(figures, TARGETS, print_table, args.json)


if __name__ == "__main__":
    main()
