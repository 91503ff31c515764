"""Fine-tuning: the head trained on bottleneck features, on top of the backbone with its last
layers unfrozen, trained end to end at a low learning rate."""
from .errors import PipelineError


def weighted_layers(backbone):
    """The backbone's layers with weights, in order, BatchNormalization excluded: what
    finetune.unfreeze counts from the top (see docs/pipeline.md, "Parameters")."""
    import keras
    return [layer for layer in backbone.layers
            if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]


def unfreeze_top(backbone, count):
    """Make the last `count` weighted layers trainable and everything else frozen, every
    BatchNormalization layer included (its scale and offset as well as its statistics: batches
    of 32 would make poor statistics). Returns the names of the unfrozen layers."""
    weighted = weighted_layers(backbone)
    if count > len(weighted):
        raise PipelineError(f"finetune.unfreeze = {count} but the backbone has only "
                            f"{len(weighted)} layers with weights: set it to {len(weighted)} "
                            "or fewer")
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = False
    for layer in weighted[-count:]:
        layer.trainable = True
    return [layer.name for layer in weighted[-count:]]


def finetune_model(backbone, head, unfreeze):
    """image -> backbone (last `unfreeze` weighted layers trainable) [-> pooled] -> `head` (the
    trained feature head, all trainable). The backbone runs with training=False: BatchNormalization
    stays in inference mode and its moving statistics never update."""
    import keras
    from .heads import takes_pooled
    unfrozen = unfreeze_top(backbone, unfreeze)
    inputs = keras.Input(shape=backbone.input_shape[1:], name="image")
    features = backbone(inputs, training=False)
    if takes_pooled(head):  # trained on pooled features (extract.pool: avg)
        features = keras.layers.GlobalAveragePooling2D(name="pooled")(features)
    outputs = head(features)
    return keras.Model(inputs, outputs, name="finetuned"), unfrozen


def parts(model):
    """(backbone, head) of a model finetune_model built, or loaded from models/finetuned.keras."""
    import keras
    backbone, head = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return backbone, head
