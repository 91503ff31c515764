"""Streaming .npy files batch by batch gives exactly what np.save/np.load give."""
import numpy as np
import pytest

from keras_bottleneck.npy_stream import NpyWriter, iter_batches, read_header


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
