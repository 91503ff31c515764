"""The small classifier trained on top of the backbone's features."""


def head_layers(head, num_classes, pooled=False):
    """Layers of the head, the original's by default:
    Conv2D(100, 2) -> Dropout(0.4) -> GlobalAveragePooling2D -> Dropout(0.3)
    [-> Dense(units, relu) -> Dropout(0.3) for each hidden unit count] -> Dense(classes, softmax).
    With filters 0 there is no Conv2D (nor its dropout): the features are pooled first, and
    without hidden units the head is a linear classifier on them, which overfits far less on
    small data (see docs/augmentation.md). On `pooled` features
    (extract.pool: avg) there is nothing left to pool."""
    import keras
    layers = [
        keras.layers.Conv2D(head.filters, head.kernel_size, name="head_conv"),
        keras.layers.Dropout(head.conv_dropout),
    ] if head.filters else []
    layers += [] if pooled else [keras.layers.GlobalAveragePooling2D()]
    layers.append(keras.layers.Dropout(head.dropout))
    for units in head.hidden_units:
        layers += [keras.layers.Dense(units, activation="relu"),
                   keras.layers.Dropout(head.dropout)]
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="predictions"))
    return layers


def apply_head(inputs, head, num_classes, pooled=False):
    x = inputs
    for layer in head_layers(head, num_classes, pooled):
        x = layer(x)
    return x


def check_fits(feature_shape, head):
    """The head's Conv2D needs a feature map at least kernel_size on each side."""
    from .errors import PipelineError
    if len(feature_shape) == 1 and head.filters:
        raise PipelineError(
            f"the features are pooled (extract.pool: avg, {feature_shape[0]} values an image) "
            f"but head.filters is {head.filters}: a Conv2D needs the feature map; set "
            "head.filters to 0 (pool first) or extract.pool to none")
    if len(feature_shape) == 1:
        return
    side = min(feature_shape[:2])
    if head.filters and side < head.kernel_size:
        raise PipelineError(
            f"the backbone's feature map is {feature_shape[0]}x{feature_shape[1]}, smaller than "
            f"head.kernel_size {head.kernel_size}: raise prepare.img_size or lower "
            "head.kernel_size")


def feature_head_model(feature_shape, head, num_classes):
    """The head alone, taking saved bottleneck features."""
    import keras
    check_fits(feature_shape, head)
    inputs = keras.Input(shape=feature_shape, name="features")
    outputs = apply_head(inputs, head, num_classes, pooled=len(feature_shape) == 1)
    return keras.Model(inputs, outputs, name="head")


def takes_pooled(head_model):
    """Whether a trained head takes pooled features (a vector an image, not a feature map)."""
    return len(head_model.input_shape) == 2


def frozen_model(backbone, head, num_classes):
    """Image -> frozen backbone -> head. training=False keeps BatchNormalization in inference
    mode (its moving statistics never update), whatever fit() passes down."""
    import keras
    check_fits(backbone.output_shape[1:], head)
    inputs = keras.Input(shape=backbone.input_shape[1:], name="image")
    features = backbone(inputs, training=False)
    return keras.Model(inputs, apply_head(features, head, num_classes), name="frozen")
