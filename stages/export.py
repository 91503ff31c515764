"""Stage export: the frozen backbone and the head trained on its features, as one classifier
from RGB images to class probabilities: models/classifier.keras, models/classes.json and a
SavedModel in models/classifier_savedmodel/."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_bottleneck import backbones, classifier, params as params_file  # noqa: E402
from keras_bottleneck.datasets import read_classes  # noqa: E402
from keras_bottleneck.errors import run_stage  # noqa: E402

FEATURES, MODELS = Path("data/features"), Path("models")


def main():
    params = params_file.load()
    import keras
    classes = read_classes(FEATURES)
    head = keras.models.load_model(MODELS / "head.keras")
    backbone = backbones.build_for_extraction(params["backbone"], params["prepare"]["img_size"])
    model = classifier.build(backbone, params["backbone"]["name"], head,
                             params["extract"]["dtype"])
    classifier.save(model, classes, MODELS / "classifier.keras", MODELS / "classes.json",
                    MODELS / "classifier_savedmodel")
    print(f"export: {MODELS}/classifier.keras ({len(classes)} classes, "
          f"{params['prepare']['img_size']}px RGB in) and {MODELS}/classifier_savedmodel/")


if __name__ == "__main__":
    run_stage(main)
