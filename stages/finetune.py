"""Stage finetune: the head from train_head on top of the backbone, whose last layers are
unfrozen, trained end to end at a low learning rate on freshly augmented images."""
from pathlib import Path

from keras_bottleneck import augment, backbones, mirror, params as params_file, training
from keras_bottleneck.datasets import prepared_img_size, read_classes, split_inputs
from keras_bottleneck.errors import PipelineError, run_stage
from keras_bottleneck.finetuning import finetune_model
from keras_bottleneck.training import run_training_stage, seed_everything

PREPARED = Path("data/prepared")


def main():
    params = params_file.load()
    classes = read_classes(PREPARED)
    splits = split_inputs(PREPARED)
    # The backbone extract ran (the same random one with weights: none), then train.seed.
    backbone = backbones.build_for_extraction(params.backbone,
                                              prepared_img_size(PREPARED, params.prepare))
    seed_everything(params.train.seed, params.train.deterministic)
    head = training.load_model("models/head.keras")
    if head.output_shape[-1] != len(classes):
        raise PipelineError(f"models/head.keras has {head.output_shape[-1]} outputs but "
                            f"{PREPARED} has {len(classes)} classes: run `dvc repro` to "
                            "retrain the head on this data")
    model, unfrozen = finetune_model(backbone, head, params.finetune.unfreeze)
    print(f"finetune: unfrozen {', '.join(unfrozen)}")
    run_training_stage("finetune", model, splits,
                       backbones.preprocess_tensor_function(params.backbone.name), params.train,
                       params.finetune.epochs, "models/finetuned.keras",
                       learning_rate=params.finetune.learning_rate,
                       sampler=augment.OnTheFly(splits["train"][0], params.augment),
                       scorer=mirror.on_images(model) if params.predict.mirror else None)


if __name__ == "__main__":
    run_stage(main)
