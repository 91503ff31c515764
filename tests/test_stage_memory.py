"""fetch and preprocess hold a few images at a time, never the dataset: run them under an
address-space limit smaller than the decoded images, on an archive of big photos. The photos are
PNGs: a JPEG is decoded at a reduced scale (draft mode), so 12-megapixel JPEGs would never be
decoded at full size, and a stage holding every decoded image would still fit."""
import resource
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from conftest import make_project
from keras_bottleneck import storage
from keras_bottleneck.images import decode_resized
from keras_bottleneck.testing.synthetic import photo

pytestmark = pytest.mark.slow  # real dvc pipelines, clusters, servers, mounts or benchmarks

LIMIT = 520 * 2**20  # address space, workers included (each inherits it)
PHOTO = (4000, 3000)  # 12 megapixels: 36 MB decoded
PER_CLASS = {"train": 10, "test": 1}


@pytest.fixture(scope="module")
def photo_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    with tarfile.open(root / "photos.tar", "w") as archive:
        for split, count in PER_CLASS.items():
            for label in ("cat", "dog"):
                for i in range(count):
                    path = root / f"{label}{i}.png"
                    photo(*PHOTO, seed=len(split) * 100 + i + (label == "dog") * 50,
                          noise=0).save(path, compress_level=1)
                    archive.add(path, f"photos/{split}/{label}/{i:03d}.png")
                    path.unlink()
    return root / "photos.tar"


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def test_fetch_and_preprocess_run_in_less_memory_than_the_decoded_images(tmp_path, env,
                                                                         photo_archive):
    images = 2 * sum(PER_CLASS.values())
    decoded_bytes = images * PHOTO[0] * PHOTO[1] * 3
    assert decoded_bytes > 1.2 * LIMIT  # the old way, everything decoded at once, cannot fit
    project = make_project(tmp_path / "project", env, photo_archive, **{
        "prepare.train_count": 2 * PER_CLASS["train"], "prepare.test_count": 2})

    for stage in ("fetch", "preprocess"):
        result = subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=project.root,
                                env=env, capture_output=True, text=True, timeout=300,
                                preexec_fn=limit_memory)
        assert result.returncode == 0, f"{stage}:\n{result.stdout}\n{result.stderr}"

    raw = project.root / "data" / "raw"
    raw_bytes = storage.data_bytes(raw)
    with tarfile.open(photo_archive) as archive:
        assert raw_bytes == sum(member.size for member in archive)  # encoded bytes, as given
    prepared = storage.read_split(project.root / "data" / "prepared", "train").rows[:]
    size = project.params()["prepare"]["img_size"]
    assert prepared.shape == (2 * PER_CLASS["train"], size, size, 3)
    with tarfile.open(photo_archive) as archive:
        first = archive.extractfile("photos/train/cat/000.png").read()
    np.testing.assert_array_equal(prepared[0], decode_resized(first, size))
