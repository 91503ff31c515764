"""Stage extract: images -> frozen backbone -> bottleneck features in data/features/."""
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from keras_bottleneck import backbones, params as params_file  # noqa: E402
from keras_bottleneck.atomic import atomic_path  # noqa: E402
from keras_bottleneck.datasets import SPLITS, read_classes, write_classes  # noqa: E402
from keras_bottleneck.errors import run_stage  # noqa: E402
from keras_bottleneck.features import extract  # noqa: E402
from keras_bottleneck.npy_stream import read_header  # noqa: E402

PREPARED, FEATURES = Path("data/prepared"), Path("data/features")


def main():
    params = params_file.load()
    classes = read_classes(PREPARED)
    img_size = read_header(PREPARED / "train_images.npy")[0][1]
    # `backbone.weights: none` means random weights: seeded, so that every run writes the same
    # bytes. A constant, not train.seed, so that changing train.seed does not re-extract;
    # train_frozen seeds with train.seed (default 0) before the same build, so at the default
    # both branches get the same random backbone.
    import keras
    keras.utils.set_random_seed(0)
    model = backbones.build(params["backbone"], img_size)
    preprocess = backbones.preprocess_function(params["backbone"]["name"])
    with atomic_path(FEATURES, directory=True) as tmp:
        for name in SPLITS:
            images = PREPARED / f"{name}_images.npy"
            with tqdm(total=read_header(images)[0][0], desc=f"extract {name}", unit="img") as bar:
                shape = extract(model, preprocess, images, tmp / f"{name}_features.npy",
                                params["extract"]["batch_size"], params["extract"]["dtype"], bar)
            shutil.copyfile(PREPARED / f"{name}_labels.npy", tmp / f"{name}_labels.npy")
        write_classes(classes, tmp)
    print(f"extract: {params['backbone']['name']} features of shape {shape[1:]} -> {FEATURES}/")


if __name__ == "__main__":
    run_stage(main)
