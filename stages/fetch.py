"""Stage fetch: the raw dataset (CIFAR-10 or an image folder) -> data/raw/, images as given."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_bottleneck import params as params_file  # noqa: E402
from keras_bottleneck.atomic import atomic_path  # noqa: E402
from keras_bottleneck.cifar10 import fetch_cifar10  # noqa: E402
from keras_bottleneck.errors import run_stage  # noqa: E402
from keras_bottleneck.folder import fetch_folder  # noqa: E402

RAW = Path("data/raw")


def main():
    data = params_file.load()["data"]
    fetch = fetch_cifar10 if data["source"] == "cifar10" else fetch_folder
    with atomic_path(RAW, directory=True) as tmp:
        counts, classes = fetch(data["path"], tmp)
    sizes = ", ".join(f"{count} {name}" for name, count in counts.items())
    print(f"fetch: {sizes} images in {len(classes)} classes -> {RAW}/")


if __name__ == "__main__":
    run_stage(main)
