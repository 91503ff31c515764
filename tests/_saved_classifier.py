"""A small exported classifier made on the spot, as the export stage saves one (every format),
for tests of what runs it that need no pipeline around it."""
from dataclasses import replace

from keras_bottleneck import backbones, classifier, engines, params
from keras_bottleneck.heads import feature_head_model

SIZE, CLASSES = 32, ["a", "b", "c"]


def saved_classifier(directory):
    """(models/classifier.keras's path, the Keras model): VGG16 with random weights at 32 px
    and the default head with a 1x1 kernel (VGG16's map there is 1x1), float16 features."""
    import keras
    keras.utils.set_random_seed(0)
    backbone = backbones.build_for_extraction(params.Backbone("vgg16", "none", 1.0), SIZE)
    head = feature_head_model(backbone.output_shape[1:],
                              replace(params.validate({}).head, kernel_size=1), len(CLASSES))
    model = classifier.build(backbone, "vgg16", head, "float16")
    paths = [directory / name for name in ("classifier.keras", "classes.json", "savedmodel",
                                           engines.CLASSIFIER_OPENVINO_DIR)]
    classifier.save(model, CLASSES, *paths, "float32")
    return paths[0], model
