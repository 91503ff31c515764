"""Stage extract: images -> frozen backbone -> bottleneck features in data/features/."""
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from keras_bottleneck import (augment, cluster, engines, incremental, mirror, params as params_file,
                              remote_engine, storage)
from keras_bottleneck.atomic import atomic_path, write_json
from keras_bottleneck.datasets import (PREPARED_SPLITS, prepared_img_size, read_classes,
                                       write_classes)
from keras_bottleneck.errors import run_stage
from keras_bottleneck.features import extract
from keras_bottleneck.resources import peak_memory_mb

PREPARED, FEATURES = Path("data/prepared"), Path("data/features")
BACKBONE = Path("models/backbone")


def main():
    params = params_file.load()
    settings = params.extract
    classes = read_classes(PREPARED)
    img_size = prepared_img_size(PREPARED, params.prepare)
    started = time.perf_counter()
    workers = cluster.connect(params.compute)
    engine = (remote_engine.load(workers, BACKBONE, params.backbone, settings, img_size)
              if workers else engines.load(BACKBONE, params.backbone, settings, img_size))
    startup = time.perf_counter() - started  # connecting, starting workers, loading the model
    current = engines.fingerprint(engine, settings)
    earlier, found, other = incremental.find_earlier(FEATURES, current)
    copies = settings.augment_copies
    images = ran = 0
    nodes = Counter()
    with atomic_path(FEATURES, directory=True) as tmp:
        writer = storage.Writer(tmp, storage.ARRAY, earlier, engine.output_shape, settings.dtype)
        splits = {}
        for name in PREPARED_SPLITS:
            prepared = storage.read_split(PREPARED, name)
            keys = incremental.row_keys(prepared.rows)
            inputs = [(name, prepared.rows, keys, prepared.labels, prepared.names)]
            if name == "train" and copies:  # only train images are augmented
                inputs.append((augment.VIEWS,
                               augment.CachedViews(prepared.rows, keys, copies, params.augment),
                               augment.view_keys(keys, copies, params.augment),
                               np.repeat(prepared.labels, copies),
                               [image for image in prepared.names for _ in range(copies)]))
            if name in mirror.SPLITS and params.predict.mirror:
                inputs.append((name + mirror.SUFFIX, mirror.MirroredRows(prepared.rows),
                               mirror.keys(keys), prepared.labels, prepared.names))
            for stored, rows, row_keys, labels, names in inputs:
                with tqdm(total=len(rows), desc=f"extract {stored}", unit="img",
                          disable=None) as bar:
                    ran += extract(engine, rows, writer, row_keys, bar, nodes)
                splits[stored] = (row_keys, labels, names)
                images += len(rows)
        writer.finish(splits)
        write_classes(classes, tmp)
        write_json(tmp / incremental.FINGERPRINT, current)
        feature_bytes = storage.data_bytes(tmp)
    seconds = time.perf_counter() - started
    write_json("metrics/extract.json", {
        "engine": settings.engine, "precision": settings.precision,
        "pool": settings.pool, "images": images, "augment_copies": copies,
        "backbone_images": ran,
        "reused_images": images - ran,
        "compute": params.compute.engine, "nodes": dict(nodes),  # rows each computed
        "retried_batches": getattr(engine, "retried_batches", 0),
        "seconds": round(seconds, 3), "startup_seconds": round(startup, 3),
        "images_per_second": round(images / seconds, 2),
        "feature_bytes": feature_bytes, "peak_memory_mb": peak_memory_mb(),
        # The openvino engine runs the converted backbone alone: no TensorFlow start-up.
        "tensorflow_imported": "tensorflow" in sys.modules})
    print(f"extract: {params.backbone.name} features ({settings.engine}, "
          f"{settings.precision}) of shape {engine.output_shape} -> {FEATURES}/; "
          f"backbone ran on {ran} of {images} images ({images - ran} reused from "
          f"{found} earlier extraction(s) with the same fingerprint"
          + (f"; {other} other(s) differ" if other else "") + ")")


if __name__ == "__main__":
    run_stage(main)
