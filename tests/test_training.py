"""Training: the frozen backbone really stays frozen, the outputs are complete and reloadable,
and train_head is reproducible bit for bit with the same seed."""
import json
import math

import keras
import numpy as np
import pytest

from keras_bottleneck.params import Backbone
from keras_bottleneck import backbones, mirror, params as params_file, training
from keras_bottleneck.heads import feature_head_model, frozen_model
from conftest import COLORS, live_history, make_image

EPOCHS, CLASSES, SIZE = 2, 3, 64
DEFAULT_HEAD = params_file.validate({}).head
TIMING_KEYS = {"train_seconds", "seconds_per_epoch"}


def tiny_images(per_class, seed):
    rng = np.random.default_rng(seed)
    images = np.stack([make_image(rng, COLORS[c], (SIZE, SIZE))
                       for c in range(CLASSES) for _ in range(per_class)])
    return images, np.repeat(np.arange(CLASSES), per_class)


def snapshot(weights):
    return [np.array(w.numpy(), copy=True) for w in weights]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """ResNet50 (random weights, but outputs of order 1, and 53 BatchNormalization layers)
    plus the default head, trained EPOCHS epochs through train() as train_frozen does."""
    out = tmp_path_factory.mktemp("train_frozen")
    keras.utils.set_random_seed(0)
    backbone = backbones.build(Backbone(name="resnet50", weights="none", alpha=1.0), SIZE)
    model = frozen_model(backbone, DEFAULT_HEAD, CLASSES)
    head_weights = [w for w in model.weights if not any(w is b for b in backbone.weights)]
    backbone_before, head_before = snapshot(backbone.weights), snapshot(head_weights)

    to_backbone_input = backbones.preprocess_tensor_function("resnet50")
    train_split, test_split = tiny_images(4, seed=1), tiny_images(2, seed=2)
    inputs = tmp_path_factory.mktemp("prepared")
    np.save(inputs / "train.npy", train_split[0])
    np.save(inputs / "test.npy", test_split[0])
    paths = {name: out / name for name in ("frozen.keras", "metrics.json", "live")}
    metrics = training.train(
        model, training.dataset(inputs / "train.npy", train_split[1], 4, to_backbone_input,
                                shuffle_seed=0),
        training.dataset(inputs / "test.npy", test_split[1], 4, to_backbone_input), EPOCHS, 1e-3,
        paths["frozen.keras"], paths["metrics.json"], paths["live"])
    return dict(model=model, backbone=backbone, head_weights=head_weights, metrics=metrics,
                backbone_before=backbone_before, head_before=head_before, paths=paths,
                test_inputs=to_backbone_input(test_split[0]), test_labels=test_split[1])


def test_frozen_backbone_and_its_batchnorm_statistics_do_not_change(trained):
    backbone = trained["backbone"]
    moving = [w for w in backbone.weights if "moving_" in w.path]
    assert len(moving) == 2 * 53  # mean and variance of every BatchNormalization layer
    assert len(backbone.non_trainable_weights) == len(backbone.weights)
    for before, weight in zip(trained["backbone_before"], backbone.weights, strict=True):
        assert np.array_equal(before, weight.numpy()), weight.path


def test_the_head_did_train(trained):
    changed = [not np.array_equal(before, w.numpy())
               for before, w in zip(trained["head_before"], trained["head_weights"], strict=True)]
    assert len(changed) == 4 and all(changed)  # Conv2D and Dense kernels and biases


def test_metrics_summary(trained):
    metrics = json.loads(trained["paths"]["metrics.json"].read_text())
    assert metrics == trained["metrics"]
    assert metrics["val_split"] == "test"  # no validation split: the original's way
    # The test figures are the saved (last epoch's) model's own, scored here anew...
    saved = keras.models.load_model(trained["paths"]["frozen.keras"])
    saved.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    test_loss, test_accuracy = saved.evaluate(trained["test_inputs"], trained["test_labels"],
                                              verbose=0)
    assert metrics["test_accuracy"] == pytest.approx(test_accuracy, abs=1e-6)
    assert metrics["test_loss"] == pytest.approx(test_loss, rel=1e-4)
    # ...and the best epoch is the one dvclive logged the highest accuracy for.
    _, logged = live_history(trained["paths"]["live"], "eval/accuracy")
    assert len(logged) == EPOCHS == metrics["epochs"]
    assert metrics["best_epoch"] == int(np.argmax(logged)) + 1
    assert metrics["best_val_accuracy"] == round(max(logged), 6)
    assert 0 < metrics["seconds_per_epoch"] <= metrics["train_seconds"]
    head_params = (2 * 2 * 2048 * 100 + 100) + (100 * CLASSES + CLASSES)
    assert metrics["trainable_params"] == head_params
    assert metrics["non_trainable_params"] == trained["backbone"].count_params()


def test_dvclive_logs_one_step_per_epoch_counted_from_1(trained):
    live = trained["paths"]["live"]
    steps, accuracy = live_history(live, "eval/accuracy")
    assert steps == list(range(1, EPOCHS + 1))  # as best_epoch
    assert round(accuracy[-1], 6) == trained["metrics"]["test_accuracy"]
    assert round(max(accuracy), 6) == trained["metrics"]["best_val_accuracy"]
    assert accuracy[trained["metrics"]["best_epoch"] - 1] == max(accuracy)
    for metric in ("eval/loss", "train/accuracy", "train/loss"):
        steps, values = live_history(live, metric)
        assert steps == list(range(1, EPOCHS + 1)) and all(map(math.isfinite, values))
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == EPOCHS and summary["eval"]["accuracy"] == accuracy[-1]


def test_saved_model_reloads_and_predicts_the_same(trained):
    reloaded = keras.models.load_model(trained["paths"]["frozen.keras"])
    inputs = trained["test_inputs"]
    expected = trained["model"].predict(inputs, verbose=0)
    np.testing.assert_allclose(reloaded.predict(inputs, verbose=0), expected, rtol=1e-6,
                               atol=1e-7)
    assert not np.allclose(expected, expected[:1])  # predictions depend on the image


def test_outputs_leave_no_temporary_files(trained):
    assert sorted(p.name for p in trained["paths"]["frozen.keras"].parent.iterdir()) == sorted(
        trained["paths"])


def test_with_a_validation_split_the_best_epoch_is_kept_and_test_scored_once(tmp_path):
    """Features whose labels are noise: validation accuracy wanders from epoch to epoch, so
    the best epoch is rarely the last one."""
    rng = np.random.default_rng(0)
    splits = {}
    for name, count in (("train", 48), ("validation", 24), ("test", 24)):
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(count, 2, 2, 8)).astype(np.float32))
        splits[name] = training.dataset(tmp_path / f"{name}.npy", rng.integers(0, 3, count), 8,
                                        shuffle_seed=0 if name == "train" else None)
    keras.utils.set_random_seed(0)
    model = feature_head_model((2, 2, 8), DEFAULT_HEAD, 3)
    paths = [tmp_path / name for name in ("head.keras", "metrics.json", "live")]

    metrics = training.train(model, splits["train"], splits["validation"], 8, 0.01, *paths,
                             test_data=splits["test"])

    _, accuracy = live_history(paths[2], "eval/accuracy")
    best = int(np.argmax(accuracy))
    assert metrics["val_split"] == "validation"
    assert metrics["best_epoch"] == best + 1
    assert metrics["best_val_accuracy"] == round(accuracy[best], 6)
    saved = keras.models.load_model(paths[0])
    saved.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # The saved model is the best epoch's, and the test figures are its own.
    assert saved.evaluate(splits["validation"], verbose=0)[1] == pytest.approx(accuracy[best])
    test_loss, test_accuracy = saved.evaluate(splits["test"], verbose=0)
    assert metrics["test_accuracy"] == round(test_accuracy, 6)
    assert metrics["test_loss"] == pytest.approx(test_loss, abs=1e-5)
    assert metrics["peak_memory_mb"] > 100


def batches_of(data, epochs):
    return [[(x.numpy(), y.numpy()) for x, y in data] for _ in range(epochs)]


@pytest.mark.parametrize("shuffle_seed", [None, 0, 7])
def test_disk_dataset_gives_the_batches_of_the_in_memory_way(tmp_path, shuffle_seed):
    """Reading from disk must not change what training sees: the same batches, in the same
    order, epoch after epoch, so the metrics stay those of the in-memory way."""
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(23, 3, 3, 5)).astype(np.float16)
    labels = rng.integers(0, 4, 23)
    np.save(tmp_path / "features.npy", inputs)
    batches = []
    for make in (lambda: training.in_memory_dataset(inputs, labels, 4, shuffle_seed=shuffle_seed),
                 lambda: training.dataset(tmp_path / "features.npy", labels, 4,
                                          shuffle_seed=shuffle_seed)):
        keras.utils.set_random_seed(3)
        batches.append(batches_of(make(), epochs=3))
    in_memory, from_disk = batches
    assert len(from_disk[0]) == 6 and len(from_disk[0][-1][0]) == 3  # 23 = 5 x 4 + 3
    for memory_epoch, disk_epoch in zip(in_memory, from_disk, strict=True):
        for (x, y), (disk_x, disk_y) in zip(memory_epoch, disk_epoch, strict=True):
            assert disk_x.dtype == np.float16
            np.testing.assert_array_equal(disk_x, x)
            np.testing.assert_array_equal(disk_y, y)
    orders = [np.concatenate([y for _, y in epoch]) for epoch in from_disk]
    if shuffle_seed is None:
        assert all(np.array_equal(order, labels) for order in orders)
    else:  # shuffled, differently each epoch
        assert not np.array_equal(orders[0], labels)
        assert not np.array_equal(orders[0], orders[1])


def test_disk_dataset_refuses_labels_that_do_not_match(tmp_path):
    np.save(tmp_path / "features.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="3 rows but there are 4 labels"):
        training.dataset(tmp_path / "features.npy", np.arange(4), 2)


def test_train_head_twice_with_the_same_seed_is_identical(project):
    project.set_params(**{"train_head.epochs": 2, "train.deterministic": True})
    # backbone and fetch are independent: DVC may run either first.
    assert sorted(project.repro("extract")) == ["backbone", "extract", "fetch", "preprocess"]
    runs = []
    for _ in range(2):
        project.run("python", "stages/train_head.py")
        metrics = project.metrics("train_head")
        history = {str(path): path.read_text() for path in
                   (project.root / "dvclive/train_head/plots/metrics").rglob("*.tsv")}
        model = keras.models.load_model(project.root / "models" / "head.keras")
        runs.append((metrics, history, [w.numpy() for w in model.weights]))
    (first, first_history, first_weights), (second, second_history, second_weights) = runs

    assert TIMING_KEYS <= first.keys()
    assert ({k: v for k, v in first.items() if k not in TIMING_KEYS}
            == {k: v for k, v in second.items() if k not in TIMING_KEYS})
    assert first_history == second_history
    assert len(first_weights) == len(second_weights) == 4
    for a, b in zip(first_weights, second_weights):
        assert np.array_equal(a, b)


def test_a_scorer_chooses_the_epoch_and_scores_the_test_split(tmp_path):
    """mirror.on_features as the scorer: validation and test are scored on pairs of feature
    files, the plain head is trained and saved, and its best epoch is the scorer's."""
    rng = np.random.default_rng(1)
    splits, labels = {}, {}
    for name, count in (("train", 48), ("validation", 24), ("test", 24)):
        labels[name] = rng.integers(0, 3, count)
        for suffix in ("", "_mirrored"):
            np.save(tmp_path / f"{name}{suffix}.npy",
                    rng.normal(size=(count, 2, 2, 8)).astype(np.float32))
    train_data = training.dataset(tmp_path / "train.npy", labels["train"], 8, shuffle_seed=0)
    pairs = {name: training.scoring_dataset(
        (tmp_path / f"{name}.npy", tmp_path / f"{name}_mirrored.npy"), labels[name], 8)
        for name in ("validation", "test")}
    keras.utils.set_random_seed(0)
    model = feature_head_model((2, 2, 8), DEFAULT_HEAD, 3)
    paths = [tmp_path / name for name in ("head.keras", "metrics.json", "live")]

    metrics = training.train(model, train_data, pairs["validation"], 8, 0.01, *paths,
                             test_data=pairs["test"], scorer=mirror.on_features(model))

    _, accuracy = live_history(paths[2], "eval/accuracy")
    assert len(set(accuracy)) > 1  # the scorer's figures, epoch by epoch
    assert metrics["mirrored"] is True and metrics["best_epoch"] == int(np.argmax(accuracy)) + 1
    saved = mirror.on_features(keras.models.load_model(paths[0]))
    saved.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert saved.evaluate(pairs["validation"], verbose=0)[1] == pytest.approx(max(accuracy))
    test_loss, test_accuracy = saved.evaluate(pairs["test"], verbose=0)
    assert metrics["test_accuracy"] == round(test_accuracy, 6)
    assert metrics["test_loss"] == pytest.approx(test_loss, abs=1e-5)
