"""Stage audit: likely label errors and duplicates from the cached features -> metrics/audit/."""
import time
from pathlib import Path

from keras_bottleneck import audit, params as params_file, storage
from keras_bottleneck.atomic import atomic_path, write_json
from keras_bottleneck.datasets import PREPARED_SPLITS, read_classes
from keras_bottleneck.errors import run_stage
from keras_bottleneck.evaluation import draw_mistakes

PREPARED, FEATURES = Path("data/prepared"), Path("data/features")
OUT, METRICS = Path("metrics/audit"), Path("metrics/audit.json")


def main():
    started = time.perf_counter()
    settings = params_file.load().audit
    classes = read_classes(FEATURES)
    prepared = {split: storage.read_split(PREPARED, split) for split in PREPARED_SPLITS}
    prepared = {split: stored for split, stored in prepared.items() if len(stored)}
    names = {split: stored.names for split, stored in prepared.items()}
    train = storage.read_split(FEATURES, "train")
    labels = train.labels
    features = audit.pooled_features(train.rows)
    probabilities = audit.out_of_fold_probabilities(
        features, labels, len(classes), settings.folds, settings.regularization,
        settings.seed)
    order, scores, flagged = audit.label_issues(labels, probabilities)
    suggested = probabilities.argmax(axis=1)
    issues = [("train", names["train"][i], classes[labels[i]], classes[suggested[i]],
               round(float(scores[i]), 6)) for i in order]

    images = {split: stored.rows for split, stored in prepared.items()}
    hashes = {split: audit.perceptual_hashes(rows) for split, rows in images.items()}
    keys = {split: stored.keys for split, stored in prepared.items()}
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
