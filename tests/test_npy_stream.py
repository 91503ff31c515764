"""Reading .npy files row by row gives exactly what np.load gives, and a damaged file is named."""
import numpy as np
import pytest

from keras_bottleneck.errors import PipelineError
from keras_bottleneck.npy_stream import NpyRows, load, read_header


@pytest.mark.parametrize("batch", [[0], [3, 1, 19], list(range(20))])
def test_rows_read_by_index_are_np_loads(tmp_path, batch):
    path = saved(tmp_path)
    np.testing.assert_array_equal(NpyRows(path).read(batch), np.load(path)[batch])
    assert read_header(path) == ((20, 2, 4), np.dtype(np.float32))


def saved(tmp_path, rows=20):
    path = tmp_path / "features.npy"
    np.save(path, np.arange(rows * 8, dtype=np.float32).reshape(rows, 2, 4))
    return path


def cut(path, count):
    path.write_bytes(path.read_bytes()[:-count])


@pytest.mark.parametrize("reader", [
    lambda path: NpyRows(path), load, read_header])
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
    cut(path, 200)
    np.testing.assert_array_equal(rows.read([0, 1]), whole[:2])  # still there
    with pytest.raises(PipelineError, match="changed while being read"):
        rows.read(list(range(20)))
    with pytest.raises(PipelineError, match="changed while being read"):
        rows.read([19, 3])


@pytest.mark.parametrize("garbage", [b"", b"not a numpy file at all", b"\x93NUMPY\x01\x00\x10"])
def test_a_file_that_is_no_npy_is_named_as_damaged(tmp_path, garbage):
    path = tmp_path / "labels.npy"
    path.write_bytes(garbage)
    with pytest.raises(PipelineError, match=f"{path} is damaged \\(not a readable .npy file"):
        load(path)
