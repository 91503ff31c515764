"""Train a model on (inputs, labels), then write the model, a metrics summary and the history."""
import time
from pathlib import Path

import numpy as np

from .atomic import atomic_path, write_json
from .errors import PipelineError, damaged
from .npy_stream import as_rows
from .resources import peak_memory_mb

# Bytes of rows read per Python call by `dataset`: large enough that the calls cost little
# next to the training step, small enough to keep memory flat.
BLOCK_BYTES = 16 * 2**20


def load_model(path):
    """A Keras model an earlier stage saved: one line if it is missing or not whole."""
    import keras
    if not Path(path).is_file():
        raise PipelineError(f"{path} is missing: run the earlier stages first (dvc repro)")
    try:
        return keras.models.load_model(path)
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds on a bad file
        raise damaged(path, " ".join(str(error).split())[:200]) from None


def seed_everything(seed, deterministic):
    """Same seed, same weights and shuffles; `deterministic` also pins op algorithms so that
    two runs give the same metrics (slightly slower on some ops)."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def dataset(inputs, labels, batch_size, transform=None, shuffle_seed=None, sampler=None):
    """A batched tf.data pipeline over `inputs` (storage.Rows, or a .npy path), read from disk
    batch by batch;
    `transform` (e.g. preprocess_input) runs per batch. With `shuffle_seed` the order changes
    every epoch: the same permutations as shuffling the arrays in memory
    (Dataset.from_tensor_slices(...).shuffle(len, seed)), since they depend only on the seed
    and the length, so the metrics are those of the in-memory way. With a `sampler`
    (augment.RandomView, augment.OnTheFly), a batch is sampler.combine(*sampler.read(rows,
    draws)) instead of the rows themselves, `draws` being one random number per row, new every
    epoch and the same every run (seeded with `shuffle_seed`); read runs in numpy, combine in
    the TensorFlow graph."""
    import tensorflow as tf
    rows, labels = as_rows(inputs), np.asarray(labels)
    if len(rows) != len(labels):
        raise ValueError(f"the inputs have {len(rows)} rows but there are {len(labels)} labels")
    indices = tf.data.Dataset.range(len(labels))
    if shuffle_seed is not None:
        indices = indices.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    # Rows are read a block of whole batches at a time, then cut back into the same batches:
    # one Python call per block instead of per batch, which competed with the training step.
    row_bytes = max(1, rows.nbytes // max(1, len(rows)))
    block = batch_size * max(1, BLOCK_BYTES // (row_bytes * batch_size))
    if sampler is None:
        def read(batch):
            return rows.read(batch), labels[batch]
        blocks, outputs = indices.batch(block), [(rows.dtype, rows.shape[1:])]
    else:
        def read(batch, draws):
            return (*sampler.read(batch, draws.view(np.uint64)), labels[batch])
        draws = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True)
        blocks, outputs = tf.data.Dataset.zip(indices, draws).batch(block), sampler.outputs

    def load(*batch):
        *inputs, batch_labels = tf.numpy_function(
            read, list(batch), [dtype for dtype, _ in outputs] + [labels.dtype], stateful=False)
        for tensor, (_, shape) in zip(inputs, outputs):
            tensor.set_shape((None,) + tuple(shape))
        batch_labels.set_shape((None,))
        return (inputs[0] if sampler is None else sampler.combine(*inputs)), batch_labels
    # rebatch forgets the number of batches, and Keras warns at each first epoch without it.
    data = blocks.map(load).rebatch(batch_size).apply(
        tf.data.experimental.assert_cardinality(-(-len(labels) // batch_size)))
    if transform is not None:
        data = data.map(lambda x, y: (transform(x), y))
    return data.prefetch(2)


def in_memory_dataset(inputs, labels, batch_size, shuffle_seed=None):
    """The former way, arrays held in memory: the reference that `dataset` is tested and
    benchmarked against (benchmarks/scale.py)."""
    import tensorflow as tf
    data = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle_seed is not None:
        data = data.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(2)


def _epoch_timer():
    """A callback recording each epoch's wall-clock seconds into the returned list."""
    import keras
    seconds, started = [], [0.0]
    callback = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.__setitem__(0, time.perf_counter()),
        on_epoch_end=lambda epoch, logs: seconds.append(time.perf_counter() - started[0]))
    return callback, seconds


class _BestWeights:
    """Keeps the weights of the epoch with the highest validation accuracy (the first, on ties)."""

    def __init__(self):
        import keras
        self.best, self.weights = -1.0, None
        self.callback = keras.callbacks.LambdaCallback(on_epoch_end=self._check)

    def _check(self, epoch, logs):
        if logs["val_accuracy"] > self.best:
            self.best, self.weights = logs["val_accuracy"], self.callback.model.get_weights()


def live_logger(directory):
    """dvclive's Keras callback logging every epoch's metrics to `directory` as it ends
    (metrics.json, plots/metrics/{train,eval}/*.tsv), so that `dvc exp show`, `dvc plots` and
    DVC's editor integrations see a run while it trains; epochs are counted from 1, as in
    best_epoch. It writes no dvc.yaml of its own (dvc.yaml declares its files) and makes no
    experiment of its own (`dvc exp run` does)."""
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback
    live = Live(str(directory), dvcyaml=False, save_dvc_exp=False, report=None)
    live.step = 1
    return DVCLiveCallback(live=live)


def _validation(scorer, val_data):
    """A callback scoring `scorer` on `val_data` after every epoch into the epoch's logs, as
    fit's own validation would, but with a model other than the one trained (see mirror)."""
    import keras

    def score(epoch, logs):
        logs["val_loss"], logs["val_accuracy"] = scorer.evaluate(val_data, verbose=0)
    return keras.callbacks.LambdaCallback(on_epoch_end=score)


def train(model, train_data, val_data, epochs, learning_rate, model_path, metrics_path,
          live_dir, test_data=None, scorer=None):
    """Fit with Adam on sparse labels, scoring `val_data` after every epoch; write the model,
    the metrics summary and the per-epoch history. With `test_data` (a validation split was
    held out), the weights of the best validation epoch are kept and the test split is scored
    once, on them. Without, `val_data` is the test split (the original's way): the last
    epoch's model is kept and its test figures reported. Every epoch's figures are logged to
    `live_dir` by dvclive as it ends (see live_logger). With predict.mirror, `scorer` is
    `model` averaged over each image and its mirror image (mirror.on_images, on_features),
    sharing its weights: it does the scoring, on its own kind of inputs."""
    import keras
    scoring = {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), **scoring)
    if scorer is not None:  # only evaluated: it needs no optimizer
        scorer.compile(**scoring)
    timer, epoch_seconds = _epoch_timer()
    best = _BestWeights()
    started = time.perf_counter()
    # The logger comes last: it logs what the callbacks before it put in the epoch's logs.
    logger = live_logger(live_dir)
    validation = ({"validation_data": val_data, "callbacks": [timer, best.callback, logger]}
                  if scorer is None else
                  {"callbacks": [timer, _validation(scorer, val_data), best.callback, logger]})
    history = model.fit(train_data, epochs=epochs, verbose=2,
                        shuffle=False,  # the tf.data pipeline shuffles, seeded
                        **validation).history
    train_seconds = time.perf_counter() - started
    accuracy = history["val_accuracy"]
    best_epoch = int(np.argmax(accuracy))
    if test_data is None:
        test_loss, test_accuracy = history["val_loss"][-1], accuracy[-1]
    else:
        model.set_weights(best.weights)
        test_loss, test_accuracy = (scorer or model).evaluate(test_data, verbose=0)
    with atomic_path(model_path) as model_tmp:
        model.save(model_tmp)
    metrics = {
        "test_accuracy": round(float(test_accuracy), 6),
        "test_loss": round(float(test_loss), 6),
        "val_split": "test" if test_data is None else "validation",
        "mirrored": scorer is not None,
        "best_epoch": best_epoch + 1,
        "best_val_accuracy": round(float(accuracy[best_epoch]), 6),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 3),
        "seconds_per_epoch": round(float(np.mean(epoch_seconds)), 3),
        "peak_memory_mb": peak_memory_mb(),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "non_trainable_params": int(sum(np.prod(w.shape) for w in model.non_trainable_weights)),
    }
    write_json(metrics_path, metrics)
    return metrics


def scoring_dataset(inputs, labels, batch_size, transform=None):
    """`dataset` over rows, in order; or over a pair of them (a tuple) read side by side (an
    image's features and its mirror image's), as ((x, x_mirrored), labels)."""
    if not isinstance(inputs, tuple):
        return dataset(inputs, labels, batch_size, transform)
    import tensorflow as tf
    first, second = (dataset(path, labels, batch_size, transform) for path in inputs)
    return tf.data.Dataset.zip(first, second).map(lambda a, b: ((a[0], b[0]), a[1]))


def run_training_stage(stage, model, splits, transform, train_settings, epochs, model_path,
                       learning_rate=None, sampler=None, scorer=None):
    """Train as stage `stage` (train_head, train_frozen or finetune) on {split: (rows,
    labels)} for `epochs` and write models/..., metrics/<stage>.json and dvclive/<stage>/, with
    `learning_rate` if given, else the params section `train_settings`'s. The validation split,
    when there is one, picks the epoch; otherwise the test split plays its part. A `sampler`
    (see `dataset`) reads the train split; a `scorer` (see `train`) scores the others, whose
    path may then be a pair of paths (see `scoring_dataset`)."""
    batch_size = train_settings.batch_size
    train_data = dataset(*splits["train"], batch_size, transform, train_settings.seed, sampler)
    test_data = scoring_dataset(*splits["test"], batch_size, transform)
    held_out = len(splits["validation"][1]) > 0
    val_data = (scoring_dataset(*splits["validation"], batch_size, transform) if held_out
                else test_data)
    metrics = train(model, train_data, val_data, epochs,
                    learning_rate or train_settings.learning_rate,
                    model_path, f"metrics/{stage}.json", f"dvclive/{stage}",
                    test_data if held_out else None, scorer)
    chosen = (f"epoch {metrics['best_epoch']} chosen on validation" if held_out else
              f"best on test {metrics['best_val_accuracy']:.3f} at epoch {metrics['best_epoch']}")
    mirrored = ", each prediction averaged with its mirror image's" if scorer is not None else ""
    print(f"{stage}: test accuracy {metrics['test_accuracy']:.3f} ({chosen}{mirrored})")
    return metrics
