"""Stage preprocess: select the subset, decode and resize it -> data/prepared/, and draw a first
look."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from keras_bottleneck import params as params_file  # noqa: E402
from keras_bottleneck.atomic import atomic_path  # noqa: E402
from keras_bottleneck.datasets import SPLITS, RawSplit, read_classes, write_classes  # noqa: E402
from keras_bottleneck.errors import run_stage  # noqa: E402
from keras_bottleneck.npy_stream import iter_batches  # noqa: E402
from keras_bottleneck.prepare import first_look, select, write_resized  # noqa: E402

RAW, PREPARED, FIRST_LOOK = Path("data/raw"), Path("data/prepared"), Path("metrics/first_images.png")


def main():
    prepare = params_file.load()["prepare"]
    classes = read_classes(RAW)
    splits = {name: RawSplit(RAW, name) for name in SPLITS}
    chosen = {name: select(split.labels, prepare[f"{name}_count"], prepare["stratify"],
                           prepare["shuffle"], prepare["seed"], name)
              for name, split in splits.items()}
    with atomic_path(PREPARED, directory=True) as tmp:
        for name, split in splits.items():
            write_resized(split, chosen[name], prepare["img_size"], tmp / f"{name}_images.npy")
            np.save(tmp / f"{name}_labels.npy", split.labels[chosen[name]])
        write_classes(classes, tmp)
        first = next(iter_batches(tmp / "train_images.npy", 8))
    with atomic_path(FIRST_LOOK) as tmp:
        first_look(first, splits["train"].labels[chosen["train"][:8]], classes, tmp)
    counts = ", ".join(f"{len(indices)} {name}" for name, indices in chosen.items())
    print(f"preprocess: {counts} images at {prepare['img_size']}px -> {PREPARED}/")


if __name__ == "__main__":
    run_stage(main)
