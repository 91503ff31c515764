"""The audit's targets on real photos, and what it costs as the dataset grows.

Real CIFAR-10 JPEGs from ../shared, 100 train images per class with 10 % of them moved to another
class folder (seeded), 100 clean test images per class plus 20 made from train images (resized
by 10 %, JPEG quality 70) and 5 exact copies; ImageNet MobileNet (alpha 0.25) at 139 px, pooled
features; `dvc repro audit`. Then the audit's parts timed on synthetic rows at --sizes (pooled
ResNet50 features: 2048 values an image) and extrapolated to 100,000 images.

    python benchmarks/audit.py [--sizes 1000 10000] [--json figures.json]
"""
import argparse
import random
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from _pipeline import (DATASET, MOBILENET, DvcProject, conditions, print_targets, progress,
                       random_images, report, require_shared)
from keras_bottleneck import audit
from keras_bottleneck.testing.synthetic import reencoded

PER_CLASS, TEST_PER_CLASS, FLIPPED, NEAR, EXACT, SEED = 100, 100, 0.10, 20, 5, 0
TARGETS = {
    "flipped_in_top_k": ("labels.top_k_share", ">=", 0.65),
    "flipped_in_top_2k": ("labels.top_2k_share", ">=", 0.85),
    "exact_copies_listed": ("duplicates.exact_share", ">=", 1.0),
    "near_copies_listed": ("duplicates.near_share", ">=", 0.95),
    "clean_test_images_listed": ("duplicates.clean_share", "<=", 0.01),
}


def planted_dataset(root, seed=SEED):
    """The dataset in `root`; returns ({moved file: its true file}, {test copy: its source})."""
    rng = random.Random(seed)
    train = {}
    with tarfile.open(DATASET) as archive:
        members = sorted((m for m in archive if m.isfile()), key=lambda m: m.name)
        classes = sorted({m.name.split("/")[2] for m in members})
        for split, count in (("train", PER_CLASS), ("test", TEST_PER_CLASS)):
            for label in classes:
                for member in [m for m in members
                               if m.name.split("/")[1:3] == [split, label]][:count]:
                    target = Path(root) / split / label / member.name.split("/")[-1]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())
                    if split == "train":
                        train[f"train/{label}/{target.name}"] = target
    names = sorted(train)
    flipped = sorted(rng.sample(names, round(FLIPPED * len(names))))
    moved = {}
    for name in flipped:
        label = name.split("/")[1]
        wrong = rng.choice([c for c in classes if c != label])
        target = Path(root) / "train" / wrong / f"flipped_{label}_{train[name].name}"
        shutil.move(train[name], target)
        moved[f"train/{wrong}/{target.name}"] = name
    copies = {}
    for i, name in enumerate(rng.sample(sorted(set(names) - set(flipped)), NEAR + EXACT)):
        label = name.split("/")[1]
        target = Path(root) / "test" / label / (f"near_{i}.jpg" if i < NEAR else f"exact_{i}.jpg")
        if i < NEAR:
            reencoded(train[name], target)
        else:
            shutil.copy(train[name], target)
        copies[f"test/{label}/{target.name}"] = name
    return moved, copies


def read_csv(path):
    import csv
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def measure_targets(workdir):
    moved, copies = planted_dataset(Path(workdir) / "images")
    project = DvcProject(Path(workdir) / "project", 10 * PER_CLASS, {
        "prepare.img_size": 139, "backbone.name": "mobilenet", "backbone.alpha": 0.25,
        "backbone.weights": str(MOBILENET), "extract.pool": "avg", "head.filters": 0},
        dataset=Path(workdir) / "images", test_count=10 * TEST_PER_CLASS + NEAR + EXACT)
    progress("dvc repro audit on the planted dataset")
    run = project.timed_repro("audit")
    ranked = [row["file"] for row in read_csv(project.root / "metrics/audit/label_issues.csv")]
    k = len(moved)
    top = {n: len(set(ranked[:n]) & set(moved)) for n in (k, 2 * k)}
    listed = {row["file_b"]: row["file_a"]
              for row in read_csv(project.root / "metrics/audit/duplicates.csv")
              if row["file_b"].startswith("test/")}
    exact = [name for name in copies if "/exact_" in name]
    near = [name for name in copies if "/near_" in name]
    clean = sorted(set(listed) - set(copies))
    return {
        "labels": {"flipped": k, "top_k": top[k], "top_2k": top[2 * k],
                   "top_k_share": top[k] / k, "top_2k_share": top[2 * k] / k},
        "duplicates": {
            "exact_share": sum(listed.get(name) == copies[name] for name in exact) / EXACT,
            "near_share": sum(listed.get(name) == copies[name] for name in near) / NEAR,
            "clean_listed": clean, "clean_share": len(clean) / (10 * TEST_PER_CLASS)},
        "audit_stage": project.metrics("audit"), "repro": run,
    }


def timed(function, *args):
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


class Rows:
    """Random 139 px images, read by index like NpyRows."""

    def __init__(self, count):
        self.images = random_images(count, 139, 0)

    def __len__(self):
        return len(self.images)

    def read(self, indices):
        return self.images[list(indices)]


def measure_cost(sizes, dims=2048, classes=10):
    """Seconds of each part of the audit at each of `sizes`, and extrapolated to 100,000."""
    rng = np.random.default_rng(0)
    per_size = {}
    for size in sizes:
        progress(f"audit's parts on {size} synthetic rows of {dims} values")
        labels = rng.integers(0, classes, size)
        features = (rng.normal(size=(classes, dims))[labels]
                    + rng.normal(size=(size, dims)) * 3).astype(np.float32)
        hashes = rng.integers(0, 2**63, size, dtype=np.uint64)
        per_size[size] = {
            "out_of_fold_seconds": round(timed(audit.out_of_fold_probabilities, features, labels,
                                               classes, 10, 0.003, 0), 2),
            "compare_hashes_seconds": round(timed(audit.near_pairs, hashes, hashes, 6, True), 3),
            "features_mb": round(features.nbytes / 1e6, 1)}
    hash_rate = 1000 / timed(audit.perceptual_hashes, Rows(1000))
    largest = max(sizes)
    scale = 100_000 / largest
    return {"dims": dims, "per_size": per_size, "hashes_per_second": round(hash_rate),
            "extrapolated_100000": {  # classifiers grow linearly, the comparison as its square
                "out_of_fold_seconds": round(per_size[largest]["out_of_fold_seconds"] * scale),
                "compare_hashes_seconds": round(
                    per_size[largest]["compare_hashes_seconds"] * scale ** 2),
                "hash_seconds": round(100_000 / hash_rate),
                "features_mb": round(100_000 * dims * 4 / 1e6)}}


def print_table(figures):
    labels, duplicates = figures["labels"], figures["duplicates"]
    print(f"Label errors: {labels['top_k']} of {labels['flipped']} flipped in the top "
          f"{labels['flipped']}, {labels['top_2k']} in the top {2 * labels['flipped']}")
    print(f"Duplicates: exact {duplicates['exact_share']:.2f}, near {duplicates['near_share']:.2f}"
          f" listed; clean test images listed: {len(duplicates['clean_listed'])}")
    print(f"The audit stage: {figures['audit_stage']['seconds']} s")
    for size, cost in figures["cost"]["per_size"].items():
        print(f"{size:>7} images: classifiers {cost['out_of_fold_seconds']} s, hash comparison "
              f"{cost['compare_hashes_seconds']} s, features {cost['features_mb']} MB")
    print(f"100,000 images (extrapolated): {figures['cost']['extrapolated_100000']}")
    print_targets(figures["targets"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000],
                        help="synthetic train images the cost is measured at")
    parser.add_argument("--dims", type=int, default=2048,
                        help="values a synthetic image's features have (ResNet50's: 2048)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    require_shared()
    with tempfile.TemporaryDirectory() as workdir:
        figures = measure_targets(workdir)
    figures["cost"] = measure_cost(args.sizes, args.dims)
    figures["conditions"] = conditions(per_class=PER_CLASS, flipped=FLIPPED, near=NEAR,
                                       exact=EXACT, seed=SEED)
    report(figures, TARGETS, print_table, args.json)


if __name__ == "__main__":
    main()
