"""A tiny archive in CIFAR-10's own format, for tests of the real reader without the 170 MB
download: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} as pickles with bytes
keys (the official ones were written by Python 2), data as N x 3072 uint8 rows, channel-first."""
import io
import pickle
import tarfile

import numpy as np

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def make_cifar_archive(path, per_batch=3, seed=0):
    """Write the archive to `path`; return {member: (data rows, labels)} as written."""
    rng = np.random.default_rng(seed)
    batches = {}
    with tarfile.open(path, "w:gz") as archive:
        def add(member, content):
            payload = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{member}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))

        for member in TRAIN_BATCHES + ["test_batch"]:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = [int(label) for label in rng.integers(0, 10, per_batch)]
            batches[member] = (data, labels)
            add(member, {b"batch_label": member.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"{member}_{i}.png".encode() for i in range(per_batch)]})
        add("batches.meta", {b"label_names": [name.encode() for name in CLASS_NAMES],
                             b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return batches
