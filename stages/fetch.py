"""Stage fetch: the raw dataset (CIFAR-10 or an image folder) -> data/raw/, images as given."""
import sys
import time
from pathlib import Path

from tqdm import tqdm

from keras_bottleneck import incremental, params as params_file
from keras_bottleneck.atomic import atomic_path, write_json
from keras_bottleneck.cifar10 import fetch_cifar10
from keras_bottleneck.datasets import raw_fingerprint, same_bytes
from keras_bottleneck.errors import run_stage
from keras_bottleneck.folder import fetch_folder

RAW, METRICS = Path("data/raw"), Path("metrics/fetch.json")


def main():
    started = time.perf_counter()
    data = params_file.load().data
    current = raw_fingerprint()
    earlier, _, _ = incremental.find_earlier(RAW, current, rows="images")
    with atomic_path(RAW, directory=True) as tmp:
        if data.source == "cifar10":  # encoded here, from pixel arrays: nothing to check
            (counts, classes), checked = fetch_cifar10(data.path, tmp, earlier), 0
        else:
            # disable=None: silent where the output is no terminal (a queued experiment's log).
            with tqdm(desc="fetch", unit="img", disable=None) as bar:
                counts, classes, checked = fetch_folder(data.path, tmp, earlier, bar)
        write_json(tmp / incremental.FINGERPRINT, current)
    images = sum(counts.values())
    across, within = same_bytes(RAW)
    if across:
        shown = ", ".join(f"{test} = {train}" for train, test in across[:5])
        more = f" and {len(across) - 5} more" if len(across) > 5 else ""
        print(f"warning: {len(across)} test images are the very same files as train images, so "
              f"the test accuracy counts images the model was trained on: {shown}{more}; "
              "delete one of each pair", file=sys.stderr)
    write_json(METRICS, {"images": images, "checked_images": checked,
                         "duplicates_across_splits": len(across),
                         "duplicates_within_split": within,
                         "seconds": round(time.perf_counter() - started, 3)})
    sizes = ", ".join(f"{count} {name}" for name, count in counts.items())
    reused = f"; {images - checked} known to decode from earlier runs" \
        if data.source == "folder" else ""
    print(f"fetch: {sizes} images in {len(classes)} classes -> {RAW}/{reused}")


if __name__ == "__main__":
    run_stage(main)
