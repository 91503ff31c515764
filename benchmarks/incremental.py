"""Benchmark incremental processing: what adding a few images costs, in time and in bytes
stored and moved, against a full run.

    python benchmarks/incremental.py        # N = 2000 at 139 px, ResNet50, 20 added (~5 min)
    python benchmarks/incremental.py --photo-size 1600x1200   # the same on photo-like JPEGs
    python benchmarks/incremental.py --images 20000 --added 200 --img-size 32 --backbone resnet50
    python benchmarks/incremental.py --images 40 --added 4 --img-size 64 --backbone vgg16

In a project copy on a folder of N random 32 px PNGs, or of photo-like JPEGs (+10% test
images), with a DVC remote in a local folder: seconds of `dvc repro extract` from scratch, then
after adding --added train images (and raising prepare.train_count to match); each time, the
seconds of each stage's script and what is left, DVC's own work, and how many images fetch
checked, preprocess decoded and the backbone ran on (from metrics/*.json); the bytes DVC's
cache grew by and the bytes and files `dvc push` sent, each run (data/raw, data/prepared,
data/features; models/backbone does not change); and what the indexes add to the rows.
Random weights: the cost does not depend on them. Prints a table, then the JSON (also written to
--json).
"""
import argparse
import tempfile
from pathlib import Path

import yaml

import _pipeline
from keras_bottleneck import storage

TARGETS = {
    "repro_after_adding_vs_full": ("repro.added_vs_full", "<=", 0.15),
    "backbone_images_vs_added": ("repro.backbone_images_vs_added", "<=", 1.0),
    "store_bytes_vs_feature_bytes": ("disk.store_vs_features", "<=", 1.1),
    # 1 % more images: about 1 % more bytes; 5 % at 2000 + 100 images, 2 % at 20,000 + 200
    "cache_growth_vs_first": ("bytes.cache_growth_vs_first", "<=", 0.05),
    "cache_growth_vs_first_data": ("bytes.cache_growth_vs_first_data", "<=", 0.05),
    "pushed_vs_first_push": ("bytes.pushed_vs_first", "<=", 0.05),
    "disk_vs_live_rows_after_removing_30_percent": ("removal.worst_stored_vs_live", "<=", 1.5),
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


def remove_share(folder, share, seed=7):
    """Delete a seeded random `share` of the train images; how many."""
    import random
    paths = sorted(path for path in (Path(folder) / "train").rglob("*") if path.is_file())
    chosen = random.Random(seed).sample(paths, int(share * len(paths)))
    for path in chosen:
        path.unlink()
    return len(chosen)


def live_vs_rows(project):
    """For each output: the bytes its chunks take in the workspace, and the bytes of the rows
    its splits use (each row once), and their ratio."""
    found = {}
    for output in ("raw", "prepared", "features"):
        folder = project.root / "data" / output
        stored, used = storage.data_bytes(folder), {}
        for index in folder.glob("*_index.npy"):
            split = storage.read_split(folder, index.name[:-len("_index.npy")])
            for position, key in enumerate(split.keys):
                if split.kind == storage.BYTES:
                    used[key.tobytes()] = split.locate(position)[2]
                else:
                    used[key.tobytes()] = split.rows.nbytes // max(1, len(split))
        found[output] = {"stored_bytes": stored, "live_bytes": sum(used.values()),
                         "stored_vs_live": round(stored / max(1, sum(used.values())), 4)}
    return {"outputs": found,
            "worst_stored_vs_live": max(item["stored_vs_live"] for item in found.values())}


def files_under(folder):
    return {path: path.stat().st_size for path in Path(folder).rglob("*") if path.is_file()}


def pushed(project, remote):
    """`dvc push` now: how much DVC's cache grew since the last call, and the files and bytes
    the push added to the remote."""
    cache = files_under(project.root / ".dvc" / "cache")
    before = files_under(remote) if remote.exists() else {}
    project.run("dvc", "push")
    after = files_under(remote)
    new = {path: size for path, size in after.items() if path not in before}
    growth = sum(size for path, size in cache.items()
                 if path not in getattr(project, "_cache_seen", {}))
    project._cache_seen = cache
    return {"cache_growth": growth, "pushed_files": len(new),
            "pushed_bytes": sum(new.values())}


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
    remote = workdir / "remote"
    project.run("dvc", "remote", "add", "-d", "local", str(remote))
    full = timed_repro(project)
    first = pushed(project, remote)
    add_images(images, args.added, photo_size)
    project.set_params({"prepare.train_count": args.images + args.added})
    _pipeline.progress(f"dvc repro extract after adding {args.added} images")
    added = timed_repro(project)
    second = pushed(project, remote)
    removed = remove_share(images, 0.3)
    project.set_params({"prepare.train_count": args.images + args.added - removed})
    _pipeline.progress(f"dvc repro extract after removing {removed} train images")
    after_removal = timed_repro(project)
    live = live_vs_rows(project)
    features = project.root / "data" / "features"
    feature_bytes = storage.data_bytes(features)
    backbone_bytes = sum(path.stat().st_size for path in
                         (project.root / "models" / "backbone").rglob("*") if path.is_file())
    store_bytes = sum(path.stat().st_size for path in features.rglob("*") if path.is_file()) \
        - feature_bytes
    return {
        "removal": {"removed_images": removed, "repro": after_removal, **live},
        "bytes": {"first": first, "added": second,
                  "cache_growth_vs_first": round(second["cache_growth"] /
                                                 first["cache_growth"], 4),
                  # the first run's growth without models/backbone (the converted backbone,
                  # stored once): the data outputs alone
                  "backbone_bytes": backbone_bytes,
                  "cache_growth_vs_first_data": round(
                      second["cache_growth"] / (first["cache_growth"] - backbone_bytes), 4),
                  "pushed_vs_first": round(second["pushed_bytes"] / first["pushed_bytes"], 4)},
        "repro": {"images": args.images, "added_images": args.added, "full": full,
                  "backbone_images_vs_added": round(added["backbone_images"] / args.added, 3),
                  "added": added, "added_vs_full": round(added["seconds"] / full["seconds"], 3)},
        "disk": {"feature_bytes": feature_bytes, "index_bytes": store_bytes,
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
          f"MiB, indexes and manifests {disk['index_bytes'] / 2**10:.1f} KiB "
          f"(x{disk['store_vs_features']})")
    moved = figures["bytes"]
    for name, label in (("first", "first run"), ("added", "after adding")):
        run = moved[name]
        print(f"  {label:14} DVC cache +{run['cache_growth'] / 2**20:9.2f} MiB, dvc push sent "
              f"{run['pushed_bytes'] / 2**20:9.2f} MiB in {run['pushed_files']} files")
    print(f"  after adding vs first: cache {moved['cache_growth_vs_first']:.4f} "
          f"({moved['cache_growth_vs_first_data']:.4f} of the data outputs alone, without the "
          f"converted backbone's {moved['backbone_bytes'] / 2**20:.1f} MiB), push "
          f"{moved['pushed_vs_first']:.4f}")
    removal = figures["removal"]
    print(f"  after removing {removal['removed_images']} train images: " + ", ".join(
        f"{name} stores x{item['stored_vs_live']:.3f} its live rows"
        for name, item in removal["outputs"].items()))
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
