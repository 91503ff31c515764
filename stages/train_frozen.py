"""Stage train_frozen: train the same head end to end through the frozen backbone."""
from pathlib import Path

from keras_bottleneck import backbones, mirror, params as params_file
from keras_bottleneck.datasets import prepared_img_size, read_classes, split_inputs
from keras_bottleneck.errors import run_stage
from keras_bottleneck.heads import frozen_model
from keras_bottleneck.training import run_training_stage, seed_everything

PREPARED = Path("data/prepared")


def main():
    params = params_file.load()
    seed_everything(params.train.seed, params.train.deterministic)
    classes = read_classes(PREPARED)
    splits = split_inputs(PREPARED)
    backbone = backbones.build(params.backbone, prepared_img_size(PREPARED, params.prepare))
    model = frozen_model(backbone, params.head, len(classes))
    preprocess = backbones.preprocess_tensor_function(params.backbone.name)
    run_training_stage("train_frozen", model, splits, preprocess, params.train,
                       params.train_frozen.epochs, "models/frozen.keras",
                       scorer=mirror.on_images(model) if params.predict.mirror else None)


if __name__ == "__main__":
    run_stage(main)
