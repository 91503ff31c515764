"""Train a model on (inputs, labels), then write the model, a metrics summary and the history."""
import json
import time

import numpy as np

from .atomic import atomic_path
from .npy_stream import NpyRows


def seed_everything(seed, deterministic):
    """Same seed, same weights and shuffles; `deterministic` also pins op algorithms so that
    two runs give the same metrics (slightly slower on some ops)."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def dataset(inputs_path, labels, batch_size, transform=None, shuffle_seed=None):
    """A batched tf.data pipeline over the rows of a .npy file, read from disk batch by batch;
    `transform` (e.g. preprocess_input) runs per batch. With `shuffle_seed` the order changes
    every epoch: the same permutations as shuffling the arrays in memory
    (Dataset.from_tensor_slices(...).shuffle(len, seed)), since they depend only on the seed
    and the length, so the metrics are those of the in-memory way."""
    import tensorflow as tf
    rows, labels = NpyRows(inputs_path), np.asarray(labels)
    if len(rows) != len(labels):
        raise ValueError(f"{inputs_path} has {len(rows)} rows but there are {len(labels)} labels")
    indices = tf.data.Dataset.range(len(labels))
    if shuffle_seed is not None:
        indices = indices.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)

    def read(batch):
        return rows.read(batch), labels[batch]

    def load(batch):
        inputs, batch_labels = tf.numpy_function(read, [batch], [rows.dtype, labels.dtype],
                                                 stateful=False)
        inputs.set_shape((None,) + tuple(rows.shape[1:]))
        batch_labels.set_shape((None,))
        return inputs, batch_labels
    data = indices.batch(batch_size).map(load)
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


def train(model, train_data, test_data, epochs, learning_rate, model_path, metrics_path,
          history_path):
    """Fit with Adam on sparse labels, evaluating on the test split after every epoch (as the
    original did); write the model, the metrics summary and the per-epoch history."""
    import keras
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer, epoch_seconds = _epoch_timer()
    with atomic_path(history_path) as history_tmp:
        started = time.perf_counter()
        history = model.fit(train_data, validation_data=test_data, epochs=epochs, verbose=2,
                            shuffle=False,  # the tf.data pipeline shuffles, seeded
                            callbacks=[timer, keras.callbacks.CSVLogger(str(history_tmp))])
        train_seconds = time.perf_counter() - started
    with atomic_path(model_path) as model_tmp:
        model.save(model_tmp)
    accuracy = history.history["val_accuracy"]
    best = int(np.argmax(accuracy))
    metrics = {
        "test_accuracy": round(float(accuracy[-1]), 6),
        "test_loss": round(float(history.history["val_loss"][-1]), 6),
        "best_epoch": best + 1,
        "best_test_accuracy": round(float(accuracy[best]), 6),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 3),
        "seconds_per_epoch": round(float(np.mean(epoch_seconds)), 3),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "non_trainable_params": int(sum(np.prod(w.shape) for w in model.non_trainable_weights)),
    }
    with atomic_path(metrics_path) as metrics_tmp:
        metrics_tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def run_training_stage(stage, model, splits, transform, params, model_path):
    """Train as stage `stage` (train_head or train_frozen) on {split: (.npy path, labels)} and
    write models/..., metrics/<stage>.json and metrics/<stage>_history.csv."""
    settings = params["train"]
    train_data = dataset(*splits["train"], settings["batch_size"], transform, settings["seed"])
    test_data = dataset(*splits["test"], settings["batch_size"], transform)
    metrics = train(model, train_data, test_data, params[stage]["epochs"],
                    settings["learning_rate"], model_path, f"metrics/{stage}.json",
                    f"metrics/{stage}_history.csv")
    print(f"{stage}: test accuracy {metrics['test_accuracy']:.3f} "
          f"(best {metrics['best_test_accuracy']:.3f} at epoch {metrics['best_epoch']})")
    return metrics
