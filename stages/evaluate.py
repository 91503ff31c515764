"""Stage evaluate: the three methods on the test split: per-class metrics, confusion matrices,
their most confident mistakes, and a report comparing them (metrics/report.md)."""
from pathlib import Path

from keras_bottleneck import (backbones, evaluation, mirror, params as params_file, storage,
                              training)
from keras_bottleneck.atomic import atomic_path, read_json, write_json
from keras_bottleneck.datasets import read_classes, split_inputs
from keras_bottleneck.errors import run_stage

PREPARED, FEATURES, MODELS, METRICS = (Path("data/prepared"), Path("data/features"),
                                       Path("models"), Path("metrics"))


def main():
    params = params_file.load()
    import tensorflow as tf
    classes = read_classes(FEATURES)
    batch_size = params.train.batch_size
    # Both models that take images read the same test images, preprocessed the same way.
    images = (split_inputs(PREPARED)["test"],
              backbones.preprocess_tensor_function(params.backbone.name))
    mirrored = params.predict.mirror
    features, labels = split_inputs(FEATURES)["test"]
    if mirrored:  # see mirror: the head also scores the mirror images' features
        features = (features, mirror.features(FEATURES, "test"))
    inputs = {"train_head": (MODELS / "head.keras", (features, labels),
                             lambda x: tf.cast(x, tf.float32)),
              "train_frozen": (MODELS / "frozen.keras", *images),
              "finetune": (MODELS / "finetuned.keras", *images)}
    test_images = images[0][0]
    results = {}
    for method, (model_path, (rows, labels), transform) in inputs.items():
        model = training.load_model(model_path)
        if mirrored:
            model = (mirror.on_features if method == "train_head" else mirror.on_images)(model)
        probabilities = evaluation.predict(model, rows, labels, batch_size, transform)
        predicted = probabilities.argmax(axis=1)
        results[method] = evaluation.class_metrics(labels, predicted, classes)
        evaluation.write_confusions(labels, predicted, classes,
                                    METRICS / f"confusion_{method}.csv")
        wrong = evaluation.most_confident_mistakes(labels, probabilities,
                                                   params.evaluate.mistakes)
        evaluation.draw_mistakes(
            list(test_images.read(wrong)),
            [f"true {classes[labels[i]]}\npredicted {classes[predicted[i]]} "
             f"{probabilities[i, predicted[i]]:.2f}" for i in wrong],
            METRICS / f"mistakes_{method}.png")
    write_json(METRICS / "evaluate.json", results)
    stage_metrics = {method: read_json(METRICS / f"{method}.json")
                     for method in inputs}
    sizes = {"features": storage.data_bytes(FEATURES),
             **{method: model_path.stat().st_size for method, (model_path, *_) in inputs.items()}}
    text = evaluation.report(results, stage_metrics,
                             read_json(METRICS / "extract.json"), sizes)
    with atomic_path(METRICS / "report.md") as tmp:
        tmp.write_text(text)
    print("evaluate: " + ", ".join(f"{method} accuracy {result['accuracy']:.3f} macro F1 "
                                   f"{result['macro_f1']:.3f}" for method, result in results.items())
          + f" -> {METRICS}/report.md")


if __name__ == "__main__":
    run_stage(main)
