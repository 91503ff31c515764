"""The head: the original's layers and parameter counts by default, configurable, and a clear
error when the backbone's feature map is too small for it."""
from dataclasses import replace

import keras
import pytest

from keras_bottleneck.params import Backbone
from keras_bottleneck import backbones, params as params_file
from keras_bottleneck.errors import PipelineError
from keras_bottleneck.heads import feature_head_model, frozen_model, takes_pooled

DEFAULT_HEAD = params_file.validate({}).head


def layer_summary(model):
    """(class name, key setting, parameter count) of each layer after the input."""
    def setting(layer):
        if isinstance(layer, keras.layers.Conv2D):
            return (layer.filters, layer.kernel_size)
        if isinstance(layer, keras.layers.Dense):
            return (layer.units, layer.activation.__name__)
        if isinstance(layer, keras.layers.Dropout):
            return layer.rate
        return None
    return [(type(layer).__name__, setting(layer), layer.count_params())
            for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def test_default_head_is_the_originals():
    model = feature_head_model((5, 5, 2048), DEFAULT_HEAD, 10)
    assert layer_summary(model) == [
        ("Conv2D", (100, (2, 2)), 2 * 2 * 2048 * 100 + 100),  # 819,300
        ("Dropout", 0.4, 0),
        ("GlobalAveragePooling2D", None, 0),
        ("Dropout", 0.3, 0),
        ("Dense", (10, "softmax"), 100 * 10 + 10),  # 1,010
    ]
    assert model.count_params() == 819_300 + 1_010
    assert model.output_shape == (None, 10)


def test_hidden_units_add_dense_and_dropout_before_the_classifier():
    head = replace(DEFAULT_HEAD, hidden_units=(256,))
    model = feature_head_model((5, 5, 2048), head, 10)
    assert layer_summary(model)[3:] == [
        ("Dropout", 0.3, 0),
        ("Dense", (256, "relu"), 100 * 256 + 256),
        ("Dropout", 0.3, 0),
        ("Dense", (10, "softmax"), 256 * 10 + 10),
    ]


def test_no_filters_pools_first_a_linear_classifier_on_pooled_features():
    head = replace(DEFAULT_HEAD, filters=0, dropout=0.5, kernel_size=9)  # no conv: no size check
    model = feature_head_model((4, 4, 256), head, 10)
    assert layer_summary(model) == [
        ("GlobalAveragePooling2D", None, 0),
        ("Dropout", 0.5, 0),
        ("Dense", (10, "softmax"), 256 * 10 + 10),
    ]


def test_head_settings_come_from_params():
    head = replace(DEFAULT_HEAD, filters=7, kernel_size=3, conv_dropout=0.1, dropout=0.2)
    model = feature_head_model((4, 4, 16), head, 3)
    assert layer_summary(model) == [
        ("Conv2D", (7, (3, 3)), 3 * 3 * 16 * 7 + 7),
        ("Dropout", 0.1, 0),
        ("GlobalAveragePooling2D", None, 0),
        ("Dropout", 0.2, 0),
        ("Dense", (3, "softmax"), 7 * 3 + 3),
    ]


def test_feature_map_smaller_than_the_kernel_is_one_line():
    with pytest.raises(PipelineError) as error:
        feature_head_model((1, 1, 2048), DEFAULT_HEAD, 10)
    message = str(error.value)
    assert "\n" not in message
    assert "head.kernel_size" in message and "prepare.img_size" in message
    feature_head_model((2, 2, 2048), DEFAULT_HEAD, 10)  # exactly the kernel's size fits


def test_frozen_model_checks_the_feature_map_too():
    backbone = backbones.build(Backbone(name="mobilenet", weights="none", alpha=0.25), 32)
    assert backbone.output_shape[1:3] == (1, 1)
    with pytest.raises(PipelineError, match="head.kernel_size"):
        frozen_model(backbone, DEFAULT_HEAD, 10)
    model = frozen_model(backbone, replace(DEFAULT_HEAD, kernel_size=1), 10)
    assert model.output_shape == (None, 10)


def test_on_pooled_features_the_head_has_nothing_left_to_pool():
    head = replace(DEFAULT_HEAD, filters=0, dropout=0.5)
    model = feature_head_model((2048,), head, 10)  # extract.pool: avg
    assert layer_summary(model) == [
        ("Dropout", 0.5, 0),
        ("Dense", (10, "softmax"), 2048 * 10 + 10),
    ]
    assert takes_pooled(model) and not takes_pooled(feature_head_model((5, 5, 2048), head, 10))


def test_a_conv2d_head_on_pooled_features_is_refused_in_one_line():
    with pytest.raises(PipelineError) as caught:
        feature_head_model((2048,), DEFAULT_HEAD, 10)
    message = str(caught.value)
    assert "extract.pool: avg" in message and "head.filters is 100" in message
    assert "set head.filters to 0" in message and "\n" not in message


def test_a_pooled_head_fine_tunes_and_exports_on_the_feature_map():
    """finetune and export put a head trained on pooled features on the backbone's map: they
    pool it as extract did."""
    from keras_bottleneck import classifier
    from keras_bottleneck.finetuning import finetune_model
    head = feature_head_model((512,), replace(DEFAULT_HEAD, filters=0), 3)
    vgg16 = backbones.build(Backbone(name="vgg16", weights="none", alpha=1.0), 64)
    model, _ = finetune_model(vgg16, head, 1)
    assert model.output_shape == (None, 3)
    exported = classifier.build(vgg16, "vgg16", head, "float16")
    assert exported.input_shape == (None, 64, 64, 3) and exported.output_shape == (None, 3)
