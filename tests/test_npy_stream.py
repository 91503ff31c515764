"""Streaming .npy files batch by batch gives exactly what np.save/np.load give."""
import numpy as np
import pytest

from keras_bottleneck.errors import PipelineError
from keras_bottleneck.npy_stream import NpyRows, NpyWriter, iter_batches, load, read_header


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.uint8])
def test_streamed_write_loads_with_np_load(tmp_path, dtype):
    array = (np.random.default_rng(0).random((11, 3, 2, 5)) * 200).astype(dtype)
    path = tmp_path / "streamed.npy"
    with NpyWriter(path, array.shape, dtype) as writer:
        for start in range(0, 11, 4):
            writer.write(array[start:start + 4])
    loaded = np.load(path)
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded, array)
    assert read_header(path) == (array.shape, np.dtype(dtype))


@pytest.mark.parametrize("batch_size", [1, 4, 11, 50])
def test_iter_batches_of_an_np_save_file(tmp_path, batch_size):
    array = np.arange(11 * 6, dtype=np.float32).reshape(11, 2, 3)
    path = tmp_path / "saved.npy"
    np.save(path, array)
    batches = list(iter_batches(path, batch_size))
    assert all(len(batch) <= batch_size for batch in batches)
    np.testing.assert_array_equal(np.concatenate(batches), array)
    assert read_header(path) == ((11, 2, 3), np.dtype(np.float32))


def test_writer_refuses_a_batch_of_the_wrong_shape(tmp_path):
    with NpyWriter(tmp_path / "a.npy", (4, 3), np.float32) as writer:
        with pytest.raises(ValueError, match="does not fit"):
            writer.write(np.zeros((2, 5)))
        writer.write(np.zeros((4, 3)))


def test_writer_refuses_too_many_rows(tmp_path):
    with NpyWriter(tmp_path / "a.npy", (4, 3), np.float32) as writer:
        writer.write(np.zeros((3, 3)))
        with pytest.raises(ValueError, match="does not fit"):
            writer.write(np.zeros((2, 3)))
        writer.write(np.zeros((1, 3)))


def test_writer_refuses_a_short_write(tmp_path):
    with pytest.raises(ValueError, match="wrote 3 rows of 4"):
        with NpyWriter(tmp_path / "a.npy", (4, 3), np.float32) as writer:
            writer.write(np.zeros((3, 3)))


def saved(tmp_path, rows=20):
    path = tmp_path / "features.npy"
    np.save(path, np.arange(rows * 8, dtype=np.float32).reshape(rows, 2, 4))
    return path


def cut(path, count):
    path.write_bytes(path.read_bytes()[:-count])


@pytest.mark.parametrize("reader", [
    lambda path: NpyRows(path), lambda path: list(iter_batches(path, 4)), load, read_header])
def test_every_reader_names_a_file_cut_short(tmp_path, reader):
    path = saved(tmp_path)
    cut(path, 200)  # what a full disk or a copy cut short leaves
    with pytest.raises(PipelineError, match="cut short") as caught:
        reader(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is damaged (") and "\n" not in message
    assert f"{path.stat().st_size} bytes where its header says {path.stat().st_size + 200}" \
        in message


def test_a_file_cut_short_while_open_is_never_read_as_rows(tmp_path):
    """The size is checked on opening; a file that shrinks afterwards must not hand back
    uninitialised memory as rows (readinto returns fewer bytes: nothing raises by itself)."""
    path = saved(tmp_path)
    whole = np.load(path)
    rows = NpyRows(path)
    batches = iter_batches(path, 4)
    next(batches)
    cut(path, 200)
    np.testing.assert_array_equal(rows.read([0, 1]), whole[:2])  # still there
    with pytest.raises(PipelineError, match="changed while being read"):
        rows.read(list(range(20)))
    with pytest.raises(PipelineError, match="changed while being read"):
        rows.read([19, 3])
    with pytest.raises(PipelineError, match="changed while being read"):
        list(batches)


@pytest.mark.parametrize("garbage", [b"", b"not a numpy file at all", b"\x93NUMPY\x01\x00\x10"])
def test_a_file_that_is_no_npy_is_named_as_damaged(tmp_path, garbage):
    path = tmp_path / "labels.npy"
    path.write_bytes(garbage)
    with pytest.raises(PipelineError, match=f"{path} is damaged \\(not a readable .npy file"):
        load(path)


def test_the_writer_claims_the_whole_file_at_once(tmp_path):
    """So a disk too small fails before the work, not after (see test_stage_errors)."""
    path = tmp_path / "big.npy"
    with NpyWriter(path, (1000, 256), np.float32) as writer:
        assert path.stat().st_blocks * 512 >= 1000 * 256 * 4
        writer.write(np.zeros((1000, 256), np.float32))
