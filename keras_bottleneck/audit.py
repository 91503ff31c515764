"""The data audit: likely label errors and duplicates, from what the pipeline already cached.

Label errors (confident learning: Northcutt, Jiang and Chuang, "Confident Learning: Estimating
Uncertainty in Dataset Labels", JAIR 70, 2021): every train image gets a class probability from
a linear classifier that never saw it (K-fold, out of fold), trained in seconds on the pooled
bottleneck features; cleanlab scores each label by the probability given to it
(`self_confidence`) and counts the likely errors (`find_label_issues`).

Duplicates: exact ones share the SHA-256 of their bytes (the rows' keys); near ones (resized,
re-encoded) have perceptual hashes (imagehash's DCT `phash` of the prepared image, 64 bits) at
most `hash_distance` bits apart. Feature similarity separates them worse: a clean CIFAR-10 test
image's nearest train image can be as close as a resized re-encoded copy (docs/audit.md).
Hashes are compared in blocks, so memory stays flat whatever the number of images.
"""
import csv
from pathlib import Path

import numpy as np

from .errors import PipelineError
from .evaluation import draw_mistakes
from .npy_stream import as_rows

HASH_BITS = 64
# Pairs of hashes compared at once: 8 bytes each, so a block takes 32 MB.
_BLOCK_PAIRS = 1 << 22


def pooled_features(features, batch_size=1024):
    """`features` (rows read by index, or a .npy path) as float32 rows, feature maps averaged
    over space (the pooling extract.pool avg does), read batch by batch."""
    rows = as_rows(features)
    batches = [batch.reshape(len(batch), -1, batch.shape[-1]).mean(axis=1, dtype=np.float32)
               if batch.ndim > 2 else batch.astype(np.float32)
               for batch in (rows.read(np.arange(start, min(start + batch_size, len(rows))))
                             for start in range(0, len(rows), batch_size))]
    return np.concatenate(batches) if batches else np.zeros((0, 0), np.float32)


def _classifiers(regularization):
    """The two linear classifiers whose probabilities are averaged: logistic regression on
    standardized features (`regularization` is its C) and shrinkage LDA. Together they rank
    flipped labels better than either (docs/audit.md)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return [make_pipeline(StandardScaler(), LogisticRegression(C=regularization, max_iter=2000)),
            LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.5)]


def out_of_fold_probabilities(features, labels, classes, folds, regularization, seed):
    """(N, classes) probabilities, each row from classifiers trained on the other folds."""
    from sklearn.model_selection import StratifiedKFold
    counts = np.bincount(labels, minlength=classes)
    folds = max(2, min(folds, int(counts[counts > 0].min())))  # every class in every fold
    probabilities = np.zeros((len(labels), classes))
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels)
    for train, held_out in splits:
        for model in _classifiers(regularization):
            model.fit(features[train], labels[train])
            # A class missing from the training folds gets probability 0.
            probabilities[np.ix_(held_out, model.classes_)] += model.predict_proba(
                features[held_out])
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def label_issues(labels, probabilities):
    """(order, scores, flagged): the images from the likeliest label error on, each label's
    quality score (cleanlab's self_confidence: the out-of-fold probability of the given class),
    and which images confident learning counts as label errors."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    scores = get_label_quality_scores(labels, probabilities, method="self_confidence")
    flagged = find_label_issues(labels, probabilities)
    return np.argsort(scores, kind="stable"), scores, flagged


def perceptual_hashes(rows, batch_size=256):
    """The 64-bit phash of each image of `rows` (HxWx3 uint8, read by index), as uint64."""
    import imagehash
    from PIL import Image
    hashes = np.zeros(len(rows), np.uint64)
    for start in range(0, len(rows), batch_size):
        for i, image in enumerate(rows.read(range(start, min(start + batch_size, len(rows))))):
            bits = imagehash.phash(Image.fromarray(image)).hash.reshape(-1)
            hashes[start + i] = np.packbits(bits).view(">u8")[0]
    return hashes


def near_pairs(queries, pool, max_distance, within=False):
    """(query index, pool index, distance) of hash pairs at most `max_distance` bits apart,
    compared a block of queries at a time; `within`: `queries` is `pool`, each pair once."""
    found = []
    block = max(1, _BLOCK_PAIRS // max(1, len(pool)))
    for start in range(0, len(queries), block):
        distances = np.bitwise_count(queries[start:start + block, None] ^ pool[None, :])
        rows, columns = np.nonzero(distances <= max_distance)
        rows = rows + start
        keep = columns < rows if within else np.ones(len(rows), bool)
        found += zip(rows[keep].tolist(), columns[keep].tolist(),
                     distances[rows[keep] - start, columns[keep]].tolist())
    return found


def exact_pairs(query_keys, pool_keys, within=False):
    """(query index, pool index) of rows whose keys (SHA-256 of the bytes) are equal."""
    first = {}
    for index, key in enumerate(map(bytes, pool_keys)):
        first.setdefault(key, []).append(index)
    pairs = []
    for index, key in enumerate(map(bytes, query_keys)):
        pairs += [(index, match) for match in first.get(key, ()) if not within or match < index]
    return pairs


def duplicates(hashes, keys, names, max_distance):
    """Rows (file_a, file_b, similarity, kind) of duplicate pairs: each validation and test
    image against the train images, and the train images among themselves; file_a is the
    train image. similarity is 1 for exact copies, else the share of hash bits equal."""
    rows = []
    for split in [name for name in ("validation", "test", "train") if len(keys.get(name, ()))]:
        within = split == "train"
        exact = set(exact_pairs(keys[split], keys["train"], within))
        rows += [(names["train"][j], names[split][i], 1.0, "exact") for i, j in sorted(exact)]
        rows += [(names["train"][j], names[split][i], round(1 - d / HASH_BITS, 4), "near")
                 for i, j, d in near_pairs(hashes[split], hashes["train"], max_distance, within)
                 if (i, j) not in exact]
    return rows


def _split_of(names):
    return {name: split for split, split_names in names.items() for name in split_names}


def summary(labels, suggested, flagged, pairs, names):
    """The counts of metrics/audit.json."""
    split_of = _split_of(names)
    return {
        "train_images": len(labels), "label_issues": int(flagged.sum()),
        "suggested_differs": int((suggested != labels).sum()),
        "out_of_fold_accuracy": round(float((suggested == labels).mean()), 6)
        if len(labels) else 0.0,
        "exact_duplicates": sum(kind == "exact" for *_, kind in pairs),
        "near_duplicates": sum(kind == "near" for *_, kind in pairs),
        # Images of the split with a copy among the train images.
        **{f"{split}_duplicates": len({b for _, b, *_ in pairs if split_of[b] == split})
           for split in ("validation", "test")},
        "train_duplicates": sum(split_of[b] == "train" for _, b, *_ in pairs),
    }


def write_csv(path, header, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def draw_pairs(images, names, pairs, path):
    """Duplicate pairs side by side, from {split: rows} `images` and {split: names}."""
    where = {name: (split, row) for split, split_names in names.items()
             for row, name in enumerate(split_names)}

    def image(name):
        split, row = where[name]
        return images[split].read([row])[0]

    draw_mistakes([np.concatenate([image(a), image(b)], axis=1) for a, b, *_ in pairs],
                  [f"{a}\n{b} {kind} {similarity}" for a, b, similarity, kind in pairs],
                  path, columns=2, empty="no duplicates found")


def report(counts, issues, pairs, shown):
    """metrics/audit/report.md: the counts, the pictures and the first rows of both lists."""
    lines = ["# Data audit", "",
             f"{counts['label_issues']} of {counts['train_images']} train labels look wrong "
             f"(confident learning; out-of-fold accuracy {counts['out_of_fold_accuracy']:.3f}); "
             f"{counts['test_duplicates']} test and {counts['validation_duplicates']} validation "
             f"images duplicate a train image; {counts['train_duplicates']} pairs within train.",
             "", "To leave images out, list their paths in the file prepare.exclude names "
             "(data/exclude.txt) and run `dvc repro`.", "",
             "## Likeliest label errors", "", "![](label_issues.png)", "",
             "| file | given | suggested | score |", "|---|---|---|---|"]
    lines += [f"| {file} | {given} | {suggested} | {score} |"
              for _, file, given, suggested, score in issues[:shown]]
    lines += ["", "## Duplicates", "", "![](duplicates.png)", "",
              "| file_a | file_b | similarity | kind |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {similarity} | {kind} |" for a, b, similarity, kind in pairs[:shown]]
    return "\n".join(lines) + "\n"


def show(directory, top):
    """The first `top` rows of both lists as text: what `keras-bottleneck audit` prints."""
    directory = Path(directory)
    tables = {}
    for name in ("label_issues", "duplicates"):
        path = directory / f"{name}.csv"
        if not path.is_file():
            raise PipelineError(f"{path} is missing: run `dvc repro audit` first")
        with open(path, newline="") as file:
            tables[name] = list(csv.reader(file))
    lines = []
    for title, (header, *rows) in (("Likeliest label errors", tables["label_issues"]),
                                   ("Duplicates", tables["duplicates"])):
        lines.append(f"{title} ({len(rows)} listed, the first {min(top, len(rows))}):")
        widths = [max(len(row[column]) for row in [header] + rows[:top])
                  for column in range(len(header))]
        lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))
                  for row in [header] + rows[:top]]
    lines.append("To leave images out: list their paths in the file prepare.exclude names "
                 "(data/exclude.txt), then `dvc repro`.")
    return "\n".join(lines)
