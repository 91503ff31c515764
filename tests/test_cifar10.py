"""The `cifar10` source on a tiny archive in CIFAR-10's own format: the real reader, the sha256
check, where archives are found, and failing offline with one clear line."""
import functools
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest
from _cifar import CLASS_NAMES, TRAIN_BATCHES, make_cifar_archive
from conftest import make_project, read_raw

from keras_bottleneck import cifar10
from keras_bottleneck.datasets import RawSplit, read_classes
from keras_bottleneck.errors import PipelineError

PER_BATCH = 3


@pytest.fixture
def tiny_archive(tmp_path):
    path = tmp_path / "tiny-cifar.tar.gz"
    return path, make_cifar_archive(path, per_batch=PER_BATCH)


def closed_port():
    """A local port nobody listens on, so connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_fetch_archive_stores_lossless_images_height_width_channel(tiny_archive, tmp_path):
    path, batches = tiny_archive
    (tmp_path / "raw").mkdir()
    counts, classes = cifar10.fetch_archive(path, tmp_path / "raw", sha256=cifar10.sha256_of(path))
    splits = {split: read_raw(tmp_path / "raw", split) for split in ("train", "test")}

    assert classes == read_classes(tmp_path / "raw") == CLASS_NAMES
    assert counts == {"train": 5 * PER_BATCH, "test": PER_BATCH}
    assert RawSplit(tmp_path / "raw", "train").names[PER_BATCH + 1] == "data_batch_2/1"
    assert len(splits["train"].images) == 5 * PER_BATCH
    assert len(splits["test"].images) == PER_BATCH
    # The second image of data_batch_2: rows are R plane, G plane, B plane, each row-major 32x32.
    row = batches["data_batch_2"][0][1]
    image = splits["train"].images[PER_BATCH + 1]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    y, x = 5, 27
    assert list(image[y, x]) == [row[y * 32 + x], row[1024 + y * 32 + x], row[2048 + y * 32 + x]]
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel],
                                      row[channel * 1024:(channel + 1) * 1024].reshape(32, 32))

    train_labels = sum((batches[member][1] for member in TRAIN_BATCHES), [])
    np.testing.assert_array_equal(splits["train"].labels, train_labels)
    np.testing.assert_array_equal(splits["test"].labels, batches["test_batch"][1])
    test_rows = batches["test_batch"][0]
    np.testing.assert_array_equal(splits["test"].images[-1][:, :, 2],
                                  test_rows[-1][2048:].reshape(32, 32))


def test_sha256_of_matches_hashlib(tiny_archive):
    path, _ = tiny_archive
    assert cifar10.sha256_of(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_official_checksum_rejects_other_archive_in_one_line(tiny_archive, tmp_path):
    path, _ = tiny_archive
    with pytest.raises(PipelineError) as caught:
        cifar10.fetch_archive(path, tmp_path / "raw")
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and cifar10.SHA256 in message and cifar10.sha256_of(path) in message
    assert "download it again" in message
    assert not (tmp_path / "raw").exists()  # checked before anything is written


def test_fetch_cifar10_checks_the_official_checksum(tiny_archive, tmp_path):
    path, _ = tiny_archive
    with pytest.raises(PipelineError, match="sha256"):
        cifar10.fetch_cifar10(path, tmp_path)


def test_locate_archive_looks_at_data_path_then_the_download_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    data_dir = tmp_path / "source"
    data_dir.mkdir()
    assert cifar10.locate_archive(data_dir) is None

    cache = tmp_path / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    keras_copy = cache / cifar10.KERAS_ARCHIVE_NAME
    keras_copy.write_bytes(b"keras' download")
    assert cifar10.locate_archive(data_dir) == keras_copy

    our_download = cache / cifar10.ARCHIVE_NAME
    our_download.write_bytes(b"our download")
    assert cifar10.locate_archive(data_dir) == our_download

    in_data_dir = data_dir / cifar10.ARCHIVE_NAME
    in_data_dir.write_bytes(b"a local copy")
    assert cifar10.locate_archive(data_dir) == in_data_dir

    named_file = tmp_path / "my-cifar.tar.gz"
    named_file.write_bytes(b"a copy under another name")
    assert cifar10.locate_archive(named_file) == named_file


def test_download_from_unreachable_url_fails_in_one_line_and_leaves_nothing(tmp_path):
    destination = tmp_path / "cache" / cifar10.ARCHIVE_NAME
    url = f"http://127.0.0.1:{closed_port()}/x.tar.gz"
    with pytest.raises(PipelineError) as caught:
        cifar10.download(destination, "data/source", url=url, timeout=5)
    message = str(caught.value)
    assert "\n" not in message
    assert url in message  # what failed
    assert cifar10.URL in message  # what to download by hand
    assert f"data/source/{cifar10.ARCHIVE_NAME}" in message  # where to put it
    assert "data.path" in message
    assert not destination.exists()
    assert not destination.parent.exists() or not any(destination.parent.iterdir())


def test_download_saves_what_the_server_sends(tmp_path, tiny_archive):
    path, _ = tiny_archive
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=path.parent)
    handler.log_message = lambda *args: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
            destination = tmp_path / "cache" / cifar10.ARCHIVE_NAME
            assert cifar10.download(destination, "data/source", url=url) == destination
        finally:
            server.shutdown()
    assert destination.read_bytes() == path.read_bytes()
    assert [p.name for p in destination.parent.iterdir()] == [cifar10.ARCHIVE_NAME]


def network_reachable(host="www.cs.toronto.edu", port=443):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


def test_fetch_stage_offline_prints_one_error_line(tmp_path, env):
    if network_reachable():
        pytest.skip("this machine can reach www.cs.toronto.edu; the test checks the offline error")
    keras_home = tmp_path / "empty_keras_home"
    keras_home.mkdir()
    env["KERAS_HOME"] = str(keras_home)
    # data.path outside the project, so a real archive someone put in data/source is not found.
    project = make_project(tmp_path / "project", env, tmp_path / "unused", **{
        "data.source": "cifar10", "data.path": str(tmp_path / "no_copy_here")})

    result = project.run("python", "stages/fetch.py", check=False, timeout=120)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert cifar10.URL in errors[0]
    assert str(tmp_path / "no_copy_here" / cifar10.ARCHIVE_NAME) in errors[0]
    assert not (project.root / "data" / "raw").exists()
    assert not any((project.root / "data").glob(".raw.tmp-*"))
    assert not any(keras_home.rglob("*"))
