"""Stage preprocess: select the subset, hold out a validation split, decode and resize the images
-> data/prepared/, and draw a first look at every class."""
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from keras_bottleneck import cluster, incremental, params as params_file, storage
from keras_bottleneck.atomic import atomic_path, write_json
from keras_bottleneck.datasets import SPLITS, RawSplit, read_classes, write_classes
from keras_bottleneck.errors import run_stage
from keras_bottleneck.prepare import (first_images_of_each_class, first_look, fingerprint,
                                      hold_out, kept, read_exclusions, select,
                                      warn_unknown_exclusions, write_resized)

RAW, PREPARED = Path("data/raw"), Path("data/prepared")
FIRST_LOOK, METRICS = Path("metrics/first_images.png"), Path("metrics/preprocess.json")


def main():
    started = time.perf_counter()
    params = params_file.load()
    prepare = params.prepare
    excluded = read_exclusions(prepare.exclude)
    classes = read_classes(RAW)
    raw = {name: RawSplit(RAW, name) for name in SPLITS}
    warn_unknown_exclusions(excluded, [name for split in raw.values() for name in split.names])
    candidates = {name: kept(split.names, excluded) for name, split in raw.items()}
    wanted = {"train": prepare.train_count, "test": prepare.test_count}
    chosen = {name: candidates[name][select(split.labels[candidates[name]], wanted[name],
                                            prepare.stratify, prepare.shuffle, prepare.seed,
                                            name)]
              for name, split in raw.items()}
    # Validation comes out of the chosen train images; it is read from the train split.
    train, validation = hold_out(raw["train"].labels, chosen["train"],
                                 prepare.validation_count, prepare.stratify, prepare.seed)
    chosen = {"train": train, "validation": validation, "test": chosen["test"]}
    workers = cluster.connect(params.compute)
    current = fingerprint(prepare.img_size)
    earlier, _, _ = incremental.find_earlier(PREPARED, current, rows="images")
    decoded = 0
    total = sum(len(indices) for indices in chosen.values())
    # disable=None: silent where the output is no terminal (a queued experiment's log).
    with atomic_path(PREPARED, directory=True) as tmp, \
            tqdm(total=total, desc="preprocess", unit="img", disable=None) as bar:
        writer = storage.Writer(tmp, storage.ARRAY, earlier,
                                (prepare.img_size, prepare.img_size, 3), np.uint8)
        splits = {}
        for name, indices in chosen.items():
            source = raw["test" if name == "test" else "train"]
            decoded += write_resized(source, indices, prepare.img_size, writer, progress=bar,
                                     cluster=workers)
            splits[name] = (source.keys[indices], source.labels[indices],
                            [source.names[i] for i in indices])
        writer.finish(splits)
        write_classes(classes, tmp)
        write_json(tmp / incremental.FINGERPRINT, current)
        labels = raw["train"].labels[chosen["train"]]
        rows = storage.read_split(tmp, "train").rows
        first = {label: list(rows.read(indices))
                 for label, indices in first_images_of_each_class(labels, 4).items()}
    with atomic_path(FIRST_LOOK) as tmp:
        first_look(first, classes, tmp)
    images = sum(len(indices) for indices in chosen.values())
    write_json(METRICS, {"images": images, "decoded_images": decoded,
                         "excluded_images": sum(len(split) for split in raw.values())
                         - sum(len(indices) for indices in candidates.values()),
                         "reused_images": images - decoded,
                         "seconds": round(time.perf_counter() - started, 3)})
    counts = ", ".join(f"{len(indices)} {name}" for name, indices in chosen.items())
    print(f"preprocess: {counts} images at {prepare.img_size}px -> {PREPARED}/; decoded "
          f"{decoded}, {images - decoded} reused from earlier runs")


if __name__ == "__main__":
    run_stage(main)
