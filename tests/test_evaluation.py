"""evaluate's pieces: per-class metrics, confusions, the most confident mistakes, the report."""
import csv

import numpy as np
import pytest
from PIL import Image

from keras_bottleneck import evaluation

CLASSES = ["cat", "dog", "emu"]


def test_class_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 0, 0])
    metrics = evaluation.class_metrics(labels, predicted, CLASSES)
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    cat, dog, emu = (metrics["per_class"][name] for name in CLASSES)
    # cat: predicted 4 times, 2 right; 3 cats, 2 found.
    assert cat == {"precision": 0.5, "recall": pytest.approx(2 / 3, abs=1e-6),
                   "f1": pytest.approx(4 / 7, abs=1e-6), "support": 3}
    assert dog == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert emu == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}  # never predicted
    assert metrics["macro_precision"] == pytest.approx(1 / 3, abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx((4 / 7 + 0.5) / 3, abs=1e-6)


def test_confusion_matrix_counts_true_by_predicted():
    counts = evaluation.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 2, 1, 2]), 3)
    assert counts.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]


def test_confusions_csv_has_one_row_per_image(tmp_path):
    path = tmp_path / "confusion.csv"
    evaluation.write_confusions(np.array([0, 2]), np.array([1, 2]), CLASSES, path)
    with open(path, newline="") as file:
        assert list(csv.DictReader(file)) == [{"actual": "cat", "predicted": "dog"},
                                              {"actual": "emu", "predicted": "emu"}]


def test_most_confident_mistakes_come_first():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.7, 0.3]])
    labels = np.array([0, 0, 1, 0, 0])  # wrong: #1 (0.8), #2 (0.6), #3 (0.95)
    assert evaluation.most_confident_mistakes(labels, probabilities, 5).tolist() == [3, 1, 2]
    assert evaluation.most_confident_mistakes(labels, probabilities, 2).tolist() == [3, 1]


@pytest.mark.parametrize("count", [0, 3])
def test_draw_mistakes(tmp_path, count):
    images = [np.full((8, 8, 3), 40 * i, np.uint8) for i in range(count)]
    evaluation.draw_mistakes(images, [f"true a\npredicted b {i}" for i in range(count)],
                             tmp_path / "mistakes.png")
    with Image.open(tmp_path / "mistakes.png") as picture:
        assert picture.format == "PNG" and picture.size[0] == 4 * 128


def stage(accuracy, seconds, split="test"):
    return {"test_accuracy": accuracy, "train_seconds": seconds, "val_split": split,
            "peak_memory_mb": 700.0}


@pytest.mark.parametrize("split", ["test", "validation"])
def test_report_answers_which_method(split):
    results = {"train_head": {"accuracy": 0.62, "macro_f1": 0.6},
               "train_frozen": {"accuracy": 0.59, "macro_f1": 0.58}}
    text = evaluation.report(results, {"train_head": stage(0.62, 30, split),
                                       "train_frozen": stage(0.59, 527, split)},
                             {"seconds": 41, "peak_memory_mb": 850.0},
                             {"features": 2**20, "train_head": 2**20, "train_frozen": 90 * 2**20})
    assert "| bottleneck features (extract, then train_head) | 0.620 | 0.600 | 71 s" in text
    assert "| frozen backbone (train_frozen) | 0.590 | 0.580 | 527 s | 700 MiB | 90.0 MiB" in text
    assert "850 MiB" in text  # extract's peak counts for the head's method
    assert "bottleneck features is the more accurate here (test accuracy 0.030 apart)" in text
    assert "7.4x faster" in text
    assert ("chosen on the validation split" in text) == (split == "validation")
    assert ("overstates" in text) == (split == "test")


def test_report_counts_what_finetune_builds_on_and_names_the_most_accurate():
    results = {"train_head": {"accuracy": 0.62, "macro_f1": 0.6},
               "train_frozen": {"accuracy": 0.59, "macro_f1": 0.58},
               "finetune": {"accuracy": 0.65, "macro_f1": 0.64}}
    text = evaluation.report(results, {"train_head": stage(0.62, 30),
                                       "train_frozen": stage(0.59, 527),
                                       "finetune": stage(0.65, 200)},
                             {"seconds": 41, "peak_memory_mb": 850.0},
                             {"features": 2**20, "train_head": 2**20, "train_frozen": 90 * 2**20,
                              "finetune": 91 * 2**20})
    # finetune starts from train_head's head: extract and train_head count in its time.
    assert "| fine-tuned (train_head's head, then finetune) | 0.650 | 0.640 | 271 s (71 s " \
        "before + 200 s) | 850 MiB | 91.0 MiB" in text
    assert "**Most accurate:** fine-tuned (train_head's head, then finetune), 0.650." in text
    assert "bottleneck features is the more accurate here" in text  # head vs frozen still
