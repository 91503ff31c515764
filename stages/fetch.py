"""Stage fetch: the raw dataset (CIFAR-10 or an image folder) -> data/raw/."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_bottleneck import params as params_file  # noqa: E402
from keras_bottleneck.atomic import atomic_path  # noqa: E402
from keras_bottleneck.cifar10 import read_cifar10  # noqa: E402
from keras_bottleneck.datasets import save_raw  # noqa: E402
from keras_bottleneck.errors import run_stage  # noqa: E402
from keras_bottleneck.folder import read_folder  # noqa: E402

RAW = Path("data/raw")


def main():
    data = params_file.load()["data"]
    read = read_cifar10 if data["source"] == "cifar10" else read_folder
    splits, classes = read(data["path"])
    with atomic_path(RAW, directory=True) as tmp:
        save_raw(splits, classes, tmp)
    sizes = ", ".join(f"{len(split.labels)} {name}" for name, split in splits.items())
    print(f"fetch: {sizes} images in {len(classes)} classes -> {RAW}/")


if __name__ == "__main__":
    run_stage(main)
