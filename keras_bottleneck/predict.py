"""Classify images with the exported classifier.

    keras-bottleneck predict PATH... [--model models/classifier.keras]
                                     [--output predictions.csv] [--top-k 3]

(`python -m keras_bottleneck.predict` is the same command.)

PATH: image files, folders (searched recursively) or .tar/.tar.gz/.zip archives. Writes one CSV
row per image (file, predicted class, its probability, the top k) and prints a short table. An
unreadable image is reported on one line and skipped; the others are still predicted, and the
exit code is 1 at the end.
"""
import argparse
import csv
import sys
import tarfile
import zipfile
from collections import defaultdict, deque
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .engines import REGISTRY, default_classifier_engine
from .errors import PipelineError, run_stage
from .images import decode_resized, is_image_file, unreadable_reason
from .parallel import ordered_map

SHOWN_ROWS = 20


DESCRIPTION = __doc__.split("\n\n")[0]


def add_arguments(parser):
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="image files, folders (recursively) or .tar/.tar.gz/.zip archives")
    parser.add_argument("--model", default="models/classifier.keras",
                        help="the exported classifier; classes.json must be beside it")
    parser.add_argument("--output", default="predictions.csv", help="the CSV to write")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per image")
    parser.add_argument("--engine", choices=list(REGISTRY),
                        help="run the OpenVINO model export wrote beside --model (the default "
                        "where it is there: no TensorFlow start-up) or the Keras model")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="images per forward pass (extract.batch_size gives the features "
                             "extract computed, bit for bit)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="keras-bottleneck predict", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return args


def check_arguments(parser, args):
    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be 1 or more")


def _is_archive(path):
    return path.is_file() and (zipfile.is_zipfile(path) or _is_tar(path))


def _is_tar(path):
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


class ImageListing:
    """Every image under the given paths, listed by name (nothing read yet), and what was
    skipped. Archives are listed now and read member by member, in the order they are stored,
    when iterated."""

    def __init__(self, paths):
        from .folder import read_tree, walk_once
        self.parts, self.skipped = [], []  # parts: (None, [file paths]) or (tree, [members])
        for path in map(Path, paths):
            if not path.exists():
                raise PipelineError(f"{path} does not exist: pass image files, folders or "
                                    "archives")
            if path.is_dir():
                files = []
                for folder, _, names in walk_once(path):
                    for file in (Path(folder) / name for name in sorted(names)):
                        (files if is_image_file(file) else self.skipped).append(file)
                self.parts.append((None, files))
            elif _is_archive(path):
                tree = read_tree(path)
                members = sorted(member for member in tree.files if is_image_file(member))
                self.skipped += [tree.shown(m) for m in sorted(tree.files) if m not in members]
                self.parts.append((tree, members))
            else:
                self.parts.append((None, [path]))  # named explicitly: tried whatever its suffix

    def __len__(self):
        return sum(len(items) for _, items in self.parts)

    def __iter__(self):
        """(name, a file path or the bytes of an archive member), one at a time."""
        for tree, items in self.parts:
            if tree is None:
                yield from ((str(file), file) for file in items)
            else:
                yield from ((tree.shown(member), data) for member, data in tree.read(items))

    def warn_skipped(self):
        by_reason = defaultdict(list)
        for path in self.skipped:
            by_reason[unreadable_reason(Path(path)) or "files that are not images"].append(path)
        for reason, paths in by_reason.items():
            shown = ", ".join(map(str, paths[:5]))
            more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
            print(f"warning: skipped {len(paths)} {reason}: {shown}{more}", file=sys.stderr)


def _decoded(name, source, img_size):
    """(name, image or None, None or the one-line reason it could not be read)."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        return name, decode_resized(data, img_size, name), None
    except PipelineError as error:
        return name, None, str(error)
    except OSError as error:
        return name, None, f"{name}: cannot be read ({error.strerror or error})"


def classify(engine, img_size, classes, sources, output, top_k, progress=None):
    """Predict every (name, source) of `sources` with `engine` (see classifier.load_engine),
    decoding on every core and streaming rows to the CSV `output`; return (the first rows,
    counts per class, names that failed). Every batch is full (the last padded): the same batch
    shape for every image, so an image's prediction does not depend on its batch-mates."""
    top_k = min(top_k, len(classes))
    failures, counts, first_rows, in_flight = [], {}, [], deque()

    def batches():
        """Padded uint8 batches of the images that decode; their names go to `in_flight`."""
        decoded = ordered_map(_decoded, ((name, source, img_size) for name, source in sources))
        batch, names = np.zeros((engine.batch_size, img_size, img_size, 3), np.uint8), []
        for name, image, failure in decoded:
            if progress is not None:
                progress.update(1)
            if failure:
                print(f"error: {failure}", file=sys.stderr)
                failures.append(name)
                continue
            batch[len(names)] = image
            names.append(name)
            if len(names) == engine.batch_size:
                in_flight.append(names)
                yield batch.copy()
                names = []
        if names:
            batch[len(names):] = 0
            in_flight.append(names)
            yield batch

    with atomic_path(output) as tmp, open(tmp, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["file", "predicted", "probability", f"top_{top_k}"])
        for probabilities in engine.outputs(batches()):
            for name, row in zip(in_flight.popleft(), probabilities):
                order = np.argsort(-row, kind="stable")[:top_k]
                top = ";".join(f"{classes[i]}:{row[i]:.4f}" for i in order)
                writer.writerow([name, classes[order[0]], f"{row[order[0]]:.4f}", top])
                counts[classes[order[0]]] = counts.get(classes[order[0]], 0) + 1
                if len(first_rows) < SHOWN_ROWS:
                    first_rows.append((name, classes[order[0]], float(row[order[0]])))
    return first_rows, counts, failures


def main(argv=None):
    run(parse_args(argv))


def run(args):
    sources = ImageListing(args.paths)
    sources.warn_skipped()
    if not len(sources):
        raise PipelineError(f"no images found in {', '.join(args.paths)}: pass image files "
                            "(.jpg, .png, ...), folders holding some, or archives of them")
    from .classifier import load_engine
    engine = args.engine or default_classifier_engine(args.model)
    running, img_size, classes = load_engine(args.model, engine, args.batch_size)
    from tqdm import tqdm
    with tqdm(total=len(sources), desc="predict", unit="img", file=sys.stderr) as bar:
        rows, counts, failures = classify(running, img_size, classes, sources, args.output,
                                          args.top_k, bar)
    for name, predicted, probability in rows:
        print(f"{predicted:>16} {probability:6.3f}  {name}")
    predicted = sum(counts.values())
    if predicted > len(rows):
        print(f"{'':>16} ...     and {predicted - len(rows)} more")
    print(f"{predicted} images -> {args.output}: " + ", ".join(
        f"{count} {name}" for name, count in sorted(counts.items(), key=lambda c: -c[1])))
    if failures:
        raise PipelineError(f"{len(failures)} of {len(sources)} images could not be read "
                            f"(named above; the others are in {args.output}): replace or "
                            "delete them")


if __name__ == "__main__":
    run_stage(main)
