"""Fine-tuning changes exactly the unfrozen layers (and the head), never a BatchNormalization
statistic, and the model it saves loads back whole."""
from dataclasses import replace

import keras
import numpy as np
import pytest

from keras_bottleneck.params import Backbone
from keras_bottleneck import augment, backbones, finetuning, params as params_file, training
from keras_bottleneck.errors import PipelineError
from keras_bottleneck.heads import feature_head_model
from conftest import COLORS, make_image

# ResNet50 with random weights: features of order 1 (random MobileNet's vanish, and with them
# every gradient), and 53 BatchNormalization layers. 4: conv5_block3's three and the one before.
SIZE, CLASSES, UNFREEZE = 32, 3, 4
RESNET = Backbone(name="resnet50", weights="none", alpha=1.0)


def values(layer):
    return [np.array(w.numpy(), copy=True) for w in layer.weights]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune")
    rng = np.random.default_rng(0)
    images = np.stack([make_image(rng, COLORS[c], (SIZE, SIZE))
                       for c in range(CLASSES) for _ in range(4)])
    labels = np.repeat(np.arange(CLASSES), 4)
    np.save(out / "images.npy", images)
    keras.utils.set_random_seed(0)
    backbone = backbones.build(RESNET, SIZE)
    head = feature_head_model(backbone.output_shape[1:],
                              replace(params_file.validate({}).head, kernel_size=1), CLASSES)
    model, unfrozen = finetuning.finetune_model(backbone, head, UNFREEZE)
    before = {layer.name: values(layer) for layer in backbone.layers}
    head_before = values(head)
    preprocess = backbones.preprocess_tensor_function("resnet50")
    sampler = augment.OnTheFly(out / "images.npy", params_file.validate({}).augment)
    data = training.dataset(out / "images.npy", labels, 4, preprocess, 0, sampler)
    plain = training.dataset(out / "images.npy", labels, 4, preprocess)
    training.train(model, data, plain, 2, 1e-3, out / "finetuned.keras", out / "metrics.json",
                   out / "live")
    return dict(backbone=backbone, head=head, model=model, unfrozen=unfrozen, before=before,
                head_before=head_before, images=images, out=out)


def test_exactly_the_unfrozen_layers_change(finetuned):
    backbone = finetuned["backbone"]
    assert len(finetuned["unfrozen"]) == UNFREEZE
    assert finetuned["unfrozen"] == [layer.name
                                     for layer in finetuning.weighted_layers(backbone)[-UNFREEZE:]]
    changed = {layer.name for layer in backbone.layers
               if any(not np.array_equal(a, b)
                      for a, b in zip(finetuned["before"][layer.name], values(layer)))}
    assert changed == set(finetuned["unfrozen"])
    assert all(not np.array_equal(a, b)
               for a, b in zip(finetuned["head_before"], values(finetuned["head"])))


def test_every_batch_normalization_statistic_is_bit_for_bit_unchanged(finetuned):
    normalizations = [layer for layer in finetuned["backbone"].layers
                      if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(normalizations) == 53
    for layer in normalizations:
        assert len(finetuned["before"][layer.name]) == 4  # scale, offset, mean, variance
        for before, after in zip(finetuned["before"][layer.name], values(layer)):
            assert before.tobytes() == after.tobytes(), layer.name


def test_the_saved_model_loads_whole_and_predicts_the_same(finetuned):
    loaded = keras.models.load_model(finetuned["out"] / "finetuned.keras")
    backbone, head = finetuning.parts(loaded)
    assert backbone.name == finetuned["backbone"].name and head.name == finetuned["head"].name
    images = backbones.preprocess_input("resnet50")(finetuned["images"][:4].astype(np.float32))
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               finetuned["model"].predict(images, verbose=0), atol=1e-6)


def test_unfreezing_more_layers_than_the_backbone_has_is_one_clear_error():
    keras.utils.set_random_seed(0)
    backbone = backbones.build(RESNET, SIZE)
    with pytest.raises(PipelineError, match=r"finetune.unfreeze = 99 .* only 53 layers"):
        finetuning.unfreeze_top(backbone, 99)
