"""Stage export: the frozen backbone and the head trained on its features (export.model: head),
or the fine-tuned model (export.model: finetune), as one classifier
from RGB images to class probabilities: models/classifier.keras, models/classes.json and a
SavedModel in models/classifier_savedmodel/ and an OpenVINO model in models/classifier_openvino/."""
from pathlib import Path

from keras_bottleneck import (backbones, classifier, engines, finetuning, mirror, training,
                              params as params_file)
from keras_bottleneck.datasets import read_classes
from keras_bottleneck.errors import run_stage

FEATURES, MODELS = Path("data/features"), Path("models")


def main():
    params = params_file.load()
    classes = read_classes(FEATURES)
    if params.export.model == "finetune":
        # Trained on images, not on stored features: nothing to round.
        backbone, head = finetuning.parts(training.load_model(MODELS / "finetuned.keras"))
        feature_dtype = "float32"
    else:
        head = training.load_model(MODELS / "head.keras")
        backbone = backbones.build_for_extraction(params.backbone, params.prepare.img_size)
        feature_dtype = params.extract.dtype
    model = classifier.build(backbone, params.backbone.name, head, feature_dtype)
    if params.predict.mirror:
        model = mirror.on_images(model, name="classifier")
    classifier.save(model, classes, MODELS / "classifier.keras", MODELS / "classes.json",
                    MODELS / "classifier_savedmodel", MODELS / engines.CLASSIFIER_OPENVINO_DIR,
                    params.extract.precision)
    print(f"export: {params.export.model} as {MODELS}/classifier.keras "
          f"({len(classes)} classes, {params.prepare.img_size}px RGB in) and "
          f"{MODELS}/classifier_savedmodel/ and {MODELS}/{engines.CLASSIFIER_OPENVINO_DIR}/")


if __name__ == "__main__":
    run_stage(main)
