"""Stage train_head: train the head on the saved bottleneck features."""
from pathlib import Path

from keras_bottleneck import augment, mirror, params as params_file, storage
from keras_bottleneck.datasets import read_classes, split_inputs
from keras_bottleneck.errors import run_stage
from keras_bottleneck.heads import feature_head_model
from keras_bottleneck.training import run_training_stage, seed_everything

FEATURES = Path("data/features")


def main():
    params = params_file.load()
    seed_everything(params.train.seed, params.train.deterministic)
    classes = read_classes(FEATURES)
    splits = split_inputs(FEATURES)
    model = feature_head_model(splits["train"][0].shape[1:], params.head, len(classes))

    def to_float32(features):  # features may be stored as float16
        import tensorflow as tf
        return tf.cast(features, tf.float32)
    sampler = None
    if storage.has_split(FEATURES, augment.VIEWS):  # extract.augment_copies > 0
        views = storage.read_split(FEATURES, augment.VIEWS).rows
        copies = len(views) // len(splits["train"][1])
        sampler = augment.RandomView(splits["train"][0], views, copies)
        print(f"train_head: each epoch shows each train image as itself or one of its "
              f"{copies} cached views")
    scorer = None
    if params.predict.mirror:
        scorer = mirror.on_features(model)
        for name in mirror.SPLITS:
            rows, labels = splits[name]
            splits[name] = ((rows, mirror.features(FEATURES, name)), labels)
    run_training_stage("train_head", model, splits, to_float32, params.train,
                       params.train_head.epochs, "models/head.keras", sampler=sampler,
                       scorer=scorer)


if __name__ == "__main__":
    run_stage(main)
