"""Stage audit: likely label errors and duplicates from the cached features -> metrics/audit/."""
import time
from pathlib import Path

from keras_bottleneck import audit, params as params_file
from keras_bottleneck.atomic import atomic_path, read_json, write_json
from keras_bottleneck.datasets import PREPARED_SPLITS, read_classes
from keras_bottleneck.errors import run_stage
from keras_bottleneck.evaluation import draw_mistakes
from keras_bottleneck.npy_stream import NpyRows, load

PREPARED, FEATURES = Path("data/prepared"), Path("data/features")
OUT, METRICS = Path("metrics/audit"), Path("metrics/audit.json")


def main():
    started = time.perf_counter()
    settings = params_file.load().audit
    classes = read_classes(FEATURES)
    splits = [split for split in PREPARED_SPLITS
              if len(load(PREPARED / f"{split}_labels.npy"))]
    names = {split: read_json(PREPARED / f"{split}_names.json") for split in splits}
    labels = load(FEATURES / "train_labels.npy")
    features = audit.pooled_features(FEATURES / "train_features.npy")
    probabilities = audit.out_of_fold_probabilities(
        features, labels, len(classes), settings.folds, settings.regularization,
        settings.seed)
    order, scores, flagged = audit.label_issues(labels, probabilities)
    suggested = probabilities.argmax(axis=1)
    issues = [("train", names["train"][i], classes[labels[i]], classes[suggested[i]],
               round(float(scores[i]), 6)) for i in order]

    images = {split: NpyRows(PREPARED / f"{split}_images.npy") for split in splits}
    hashes = {split: audit.perceptual_hashes(rows) for split, rows in images.items()}
    keys = {split: load(PREPARED / f"{split}_keys.npy") for split in splits}
    pairs = audit.duplicates(hashes, keys, names, settings.hash_distance)

    counts = audit.summary(labels, suggested, flagged, pairs, names)
    with atomic_path(OUT, directory=True) as tmp:
        audit.write_csv(tmp / "label_issues.csv", ["split", "file", "given", "suggested",
                                                   "score"], issues)
        audit.write_csv(tmp / "duplicates.csv", ["file_a", "file_b", "similarity", "kind"], pairs)
        top = order[:settings.shown]
        draw_mistakes(list(images["train"].read(top)) if len(top) else [],
                      [f"given {classes[labels[i]]}\nsuggested {classes[suggested[i]]}"
                       for i in top], tmp / "label_issues.png", empty="no train images")
        audit.draw_pairs(images, names, pairs[:settings.shown], tmp / "duplicates.png")
        (tmp / "report.md").write_text(audit.report(counts, issues, pairs, settings.shown))
    write_json(METRICS, {**counts, "seconds": round(time.perf_counter() - started, 3)})
    print(f"audit: {counts['label_issues']} likely label errors of {len(labels)} train images, "
          f"{counts['exact_duplicates']} exact and {counts['near_duplicates']} near duplicate "
          f"pairs -> {OUT}/ (keras-bottleneck audit shows the top suspects)")


if __name__ == "__main__":
    run_stage(main)
