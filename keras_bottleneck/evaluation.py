"""Score trained models on the test split: per-class metrics, confusions, the most confident
mistakes, and a side-by-side report of the methods."""
import csv

import numpy as np
from PIL import Image, ImageDraw

from .atomic import atomic_path
from .training import scoring_dataset

# method -> (how the report names it, its training stage)
METHODS = {
    "train_head": "bottleneck features (extract, then train_head)",
    "train_frozen": "frozen backbone (train_frozen)",
    "finetune": "fine-tuned (train_head's head, then finetune)",
}


def predict(model, inputs, labels, batch_size, transform=None):
    """Class probabilities for every row of `inputs` (rows, or a pair of them, see
    training.scoring_dataset), read batch by batch, in order."""
    batches = scoring_dataset(inputs, labels, batch_size, transform)
    return np.concatenate([np.asarray(model.predict_on_batch(x)) for x, _ in batches]
                          or [np.zeros((0, model.output_shape[-1]), np.float32)])


def confusion_matrix(labels, predicted, num_classes):
    """counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def class_metrics(labels, predicted, classes):
    """Accuracy, macro-averaged precision, recall and F1, and each class's (a class never
    predicted has precision 0; never present, recall 0: both pull the macro averages down)."""
    counts = confusion_matrix(labels, predicted, len(classes))
    hits = np.diag(counts).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(hits / counts.sum(axis=0))
        recall = np.nan_to_num(hits / counts.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return {
        "accuracy": round(float(hits.sum() / max(len(labels), 1)), 6),
        "macro_precision": round(float(precision.mean()), 6),
        "macro_recall": round(float(recall.mean()), 6),
        "macro_f1": round(float(f1.mean()), 6),
        "per_class": {name: {"precision": round(float(p), 6), "recall": round(float(r), 6),
                             "f1": round(float(f), 6), "support": int(n)}
                      for name, p, r, f, n in zip(classes, precision, recall, f1,
                                                  counts.sum(axis=1))},
    }


def write_confusions(labels, predicted, classes, path):
    """One row per test image (actual, predicted class names): DVC's confusion template."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["actual", "predicted"])
        writer.writerows((classes[a], classes[p]) for a, p in zip(labels, predicted))


def most_confident_mistakes(labels, probabilities, count):
    """Indices of the wrongly classified images, highest predicted probability first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def draw_mistakes(images, captions, path, tile=128, columns=4,
                  empty="no mistakes on the test split"):
    """A grid of images, each with its caption lines above it (`empty` where there are none).
    An image twice as wide as high (a pair side by side) takes a tile twice as wide."""
    width = tile * max([image.shape[1] // image.shape[0] for image in images] + [1])
    rows = max(1, -(-len(images) // columns))
    sheet = Image.new("RGB", (width * columns, (tile + 28) * rows), "white")
    draw = ImageDraw.Draw(sheet)
    if not images:
        draw.text((4, 4), empty, fill="black")
    for i, (image, caption) in enumerate(zip(images, captions)):
        x, y = (i % columns) * width, (i // columns) * (tile + 28)
        draw.text((x + 2, y + 2), caption, fill="black")
        size = (tile * max(1, image.shape[1] // image.shape[0]), tile)
        sheet.paste(Image.fromarray(image).resize(size, Image.NEAREST), (x, y + 28))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def _megabytes(size):
    return f"{size / 2**20:.1f} MiB"


def report(evaluation, stage_metrics, extract_metrics, sizes):
    """Markdown answering the original article's question for the data at hand."""
    rows, summary = [], {}
    for method, name in METHODS.items():
        if method not in evaluation:
            continue
        trained = stage_metrics[method]
        seconds = trained["train_seconds"]
        peak = trained.get("peak_memory_mb", 0)
        time_text = f"{seconds:.0f} s"
        if method == "train_head":
            before = extract_metrics["seconds"]
            time_text = f"{before + seconds:.0f} s (extract {before:.0f} s once + {seconds:.0f} s)"
        elif method == "finetune":  # it starts from train_head's head: that cost counts too
            before = extract_metrics["seconds"] + stage_metrics["train_head"]["train_seconds"]
            time_text = f"{before + seconds:.0f} s ({before:.0f} s before + {seconds:.0f} s)"
        if method in ("train_head", "finetune"):
            seconds += before
            peak = max(peak, extract_metrics.get("peak_memory_mb", 0))
        if method == "train_head":
            disk = (f"{_megabytes(sizes['features'] + sizes['train_head'])} (features "
                    f"{_megabytes(sizes['features'])} + head {_megabytes(sizes['train_head'])})")
        else:
            disk = f"{_megabytes(sizes[method])} (model with backbone)"
        summary[method] = (evaluation[method]["accuracy"], seconds)
        rows.append(f"| {name} | {evaluation[method]['accuracy']:.3f} | "
                    f"{evaluation[method]['macro_f1']:.3f} | {time_text} | {peak:.0f} MiB | "
                    f"{disk} |")
    lines = ["# Bottleneck features or a frozen backbone, on this data", "",
             "| method | test accuracy | macro F1 | time to train | peak memory | disk |",
             "| --- | --- | --- | --- | --- | --- |", *rows, ""]
    if "train_head" in summary and "train_frozen" in summary:
        (head_accuracy, head_seconds), (frozen_accuracy, frozen_seconds) = (
            summary["train_head"], summary["train_frozen"])
        more = "bottleneck features" if head_accuracy >= frozen_accuracy else "the frozen backbone"
        ratio = head_seconds / max(frozen_seconds, 1e-9)
        speed = (f"{1 / ratio:.1f}x faster" if ratio < 1 else f"{ratio:.1f}x slower")
        lines.append(f"**Answer:** {more} is the more accurate here (test accuracy "
                     f"{abs(head_accuracy - frozen_accuracy):.3f} apart), and bottleneck "
                     f"features are {speed} to train than the frozen backbone, extraction "
                     "included.")
    if len(summary) > 2:
        best = max(summary, key=lambda method: summary[method][0])
        lines.append(f"**Most accurate:** {METHODS[best]}, {summary[best][0]:.3f}.")
    split = stage_metrics["train_head"]["val_split"]
    lines += ["", ("The epoch of each model was chosen on the validation split; the test split "
                   "was scored once, on the saved model." if split == "validation" else
                   "No validation split (prepare.validation_count is 0, the original's way): each "
                   "model is its last epoch, and the per-epoch curves are test-split scores, so a "
                   "'best epoch' read off them overstates accuracy. Set "
                   "prepare.validation_count to choose the epoch honestly.")]
    if stage_metrics["train_head"].get("mirrored"):
        lines.append("Every prediction is the mean of the model's for the image and for its "
                     "mirror image (predict.mirror).")
    lines += ["", "## Data audit", "",
              "The audit stage lists likely label errors and duplicates between the splits, "
              "from these features: [metrics/audit/report.md](audit/report.md) with pictures, "
              "metrics/audit/label_issues.csv and duplicates.csv; `keras-bottleneck audit` "
              "prints the first ones. List images in prepare.exclude to leave them out. (It "
              "is a stage of its own that nothing depends on, so it is not summed up here.)"]
    lines.append("")
    return "\n".join(lines)
