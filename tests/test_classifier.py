"""The exported classifier (stage export): the predictions behind train_head's recorded test
accuracy, loadable without this project's code, and served the same as a SavedModel."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from _ran_project import IMAGES, ran_project, ran_project_template  # noqa: F401
from _saved_classifier import CLASSES, SIZE, saved_classifier
from keras_bottleneck import classifier
from keras_bottleneck.errors import PipelineError
from keras_bottleneck.storage import read_split


def run_predict(project, output, *options):
    result = project.run("python", "-m", "keras_bottleneck.predict", f"{IMAGES}/test",
                         "--output", output, *options)
    with open(output, newline="") as file:
        return list(csv.DictReader(file)), result


@pytest.fixture(scope="module")
def exported(ran_project_template, tmp_path_factory):  # noqa: F811
    """The ran project (extract.engine openvino, the default), and `predict` run on its test
    split's source image files with the default engine: the OpenVINO model export wrote."""
    project = ran_project_template
    assert project.metrics("extract")["engine"] == "openvino"
    rows, result = run_predict(project, tmp_path_factory.mktemp("predict") / "predictions.csv")
    return project, rows, result


@pytest.fixture(scope="module")
def predicted_by_keras(exported, tmp_path_factory):
    project, _, _ = exported
    return run_predict(project, tmp_path_factory.mktemp("predict") / "predictions.csv",
                       "--engine", "tensorflow")[0]


@pytest.mark.parametrize("engine", ["openvino", "tensorflow"])
def test_predict_gives_the_predictions_behind_train_heads_test_accuracy(
        engine, exported, predicted_by_keras):
    project, rows, _ = exported
    rows = rows if engine == "openvino" else predicted_by_keras
    root = project.root
    classes = json.loads((root / "models" / "classes.json").read_text())
    test = read_split(root / "data" / "features", "test")
    features, labels = test.rows[:], test.labels
    assert features.dtype == np.float16  # the default storage: the classifier must round alike
    head = keras.models.load_model(root / "models" / "head.keras")
    probabilities = head.predict(features.astype(np.float32), verbose=0)

    # predict read the source files in the dataset's order: the same images, one row each.
    assert [Path(row["file"]).relative_to(IMAGES).as_posix() for row in rows] == \
        read_split(root / "data" / "raw", "test").names == test.names
    assert [row["predicted"] for row in rows] == [classes[i] for i in probabilities.argmax(1)]
    np.testing.assert_allclose([float(row["probability"]) for row in rows],
                               probabilities.max(axis=1), atol=1e-4)
    accuracy = np.mean([row["predicted"] == classes[label] for row, label in zip(rows, labels)])
    assert round(accuracy, 6) == project.metrics("train_head")["test_accuracy"]
    assert len(set(row["predicted"] for row in rows)) > 1  # the check means something


def test_predict_prints_a_short_table(exported):
    _, rows, result = exported
    lines = result.stdout.splitlines()
    assert lines[0].split()[-1] == rows[0]["file"]
    assert lines[-1].startswith(f"{len(rows)} images -> ")


# The package is installed: importing it is made to fail, as where it is not.
FRESH_PROCESS = """
import sys
sys.modules["keras_bottleneck"] = None
import keras, numpy as np
model = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
"""


def test_the_exported_model_loads_without_this_project(exported, tmp_path):
    project, _, _ = exported
    model_path = project.root / "models" / "classifier.keras"
    images = read_split(project.root / "data" / "prepared", "test").rows[:]
    np.save(tmp_path / "images.npy", images)
    env = {key: value for key, value in project.env.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, model_path,
                             tmp_path / "images.npy", tmp_path / "out.npy"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    model, classes = classifier.load(model_path)
    expected = model.predict(images, verbose=0)
    fresh = np.load(tmp_path / "out.npy")
    assert fresh.shape == (len(images), len(classes))
    np.testing.assert_allclose(fresh, expected, rtol=1e-6, atol=1e-7)
    assert (fresh.argmax(1) == expected.argmax(1)).all()


def test_the_saved_model_serves_the_same_probabilities(exported):
    import tensorflow as tf
    project, _, _ = exported
    images = read_split(project.root / "data" / "prepared", "test").rows[:]
    served = tf.saved_model.load(str(project.root / "models" / "classifier_savedmodel"))
    expected = keras.models.load_model(project.root / "models" / "classifier.keras").predict(
        images, verbose=0)
    np.testing.assert_allclose(np.asarray(served.serve(tf.constant(images))), expected,
                               rtol=1e-5, atol=1e-6)


def test_export_model_finetune_exports_the_fine_tuned_model(ran_project, tmp_path):  # noqa: F811
    project = ran_project
    project.set_params(**{"export.model": "finetune"})
    assert project.repro() == ["export"]
    output = tmp_path / "predictions.csv"
    project.run("python", "-m", "keras_bottleneck.predict", f"{IMAGES}/test", "--output", output)
    with open(output, newline="") as file:
        predicted = [row["predicted"] for row in csv.DictReader(file)]
    classes = json.loads((project.root / "models" / "classes.json").read_text())
    labels = read_split(project.root / "data" / "prepared", "test").labels
    accuracy = np.mean([name == classes[label] for name, label in zip(predicted, labels)])
    assert round(accuracy, 6) == project.metrics("finetune")["test_accuracy"]
    images = read_split(project.root / "data" / "prepared", "test").rows[:]
    finetuned = keras.models.load_model(project.root / "models" / "finetuned.keras")
    from keras_bottleneck.backbones import preprocess_input
    expected = finetuned.predict(preprocess_input("vgg16")(images.astype(np.float32)), verbose=0)
    model, _ = classifier.load(project.root / "models" / "classifier.keras")
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_load_refuses_what_is_not_a_classifier(tmp_path):
    with pytest.raises(PipelineError, match="does not exist: run `dvc repro export`"):
        classifier.load(tmp_path / "classifier.keras")
    (tmp_path / "classifier.keras").write_text("not a model")
    with pytest.raises(PipelineError, match="is not a Keras model") as caught:
        classifier.load(tmp_path / "classifier.keras")
    assert "\n" not in str(caught.value)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save(tmp_path / "other.keras")
    (tmp_path / "classes.json").write_text('["a", "b"]')
    with pytest.raises(PipelineError, match="is not an exported classifier"):
        classifier.load(tmp_path / "other.keras")
    (tmp_path / "classes.json").unlink()
    with pytest.raises(PipelineError, match="classes.json is missing"):
        classifier.load(tmp_path / "other.keras")


def test_every_engine_runs_the_saved_classifier_as_keras_predicts(tmp_path):
    """Without a pipeline: a classifier built and saved as export does, run by each engine of
    the registry through load_engine, gives Keras' probabilities; predict's default is the
    first engine whose model is there."""
    from keras_bottleneck import engines
    model_path, model = saved_classifier(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), np.uint8)
    expected = model.predict(images, verbose=0)
    assert engines.default_classifier_engine(model_path) == next(iter(engines.REGISTRY))
    for name in engines.REGISTRY:
        running, img_size, found = classifier.load_engine(model_path, name, batch_size=8)
        assert img_size == SIZE and found == CLASSES
        padded = np.zeros((8, SIZE, SIZE, 3), np.float32)
        padded[:5] = images
        probabilities = next(running.outputs([padded]))[:5]
        np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    (engines.REGISTRY["openvino"].classifier_file(model_path)).unlink()
    assert engines.REGISTRY[engines.default_classifier_engine(model_path)].classifier_file(
        model_path) == model_path
