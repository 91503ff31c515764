"""Rows stored so that what did not change stays in files that do not change.

DVC deduplicates whole files, so the raw images (data/raw), the prepared images (data/prepared)
and the features (data/features) keep their rows in chunk files named by their content, which a
later run links into its output as they are. A run that adds images writes only new chunks
holding the new rows, plus a small index per split: DVC's cache, `dvc push` and `dvc pull` then
move about what changed. An output directory holds:

    chunks/<name>.npy            rows of one shape and dtype (prepared images, features), or
    chunks/<name>.bin            encoded images back to back (raw), with
    chunks/<name>.spans.npy      each one's offset and length in the .bin, and
    chunks/<name>.keys.npy       each row's key (SHA-256, 32 bytes): what identifies it
    <split>_chunks.json          the chunks the split reads (in the index's numbering), its
                                 kind and the rows' shape and dtype
    <split>_index.npy            per row of the split, in the dataset's order: chunk, row in it
    <split>_labels.npy           per row: its class number
    <split>_names.json.gz        per row: the image's path inside the user's folder or archive

A chunk's name is the SHA-256 of its bytes and keys: the same rows in the same order are the
same file, whichever run wrote them. Chunks hold up to CHUNK_BYTES; new rows go into new chunks
in the order they come. An earlier chunk is kept (linked, never rewritten) while at least
KEEP_SHARE of its rows are still wanted; below that its live rows are copied into new chunks
and it is dropped. Each kept chunk is then at least 2/3 live rows, so the live data never costs
more than 1.5 times its size on disk (the index aside). The index files hold no keys (they are
in the chunks' manifests) and compress the names, so that what a run rewrites whole stays a few
bytes an image.

`read_split(directory, split)` is the one reader of data/prepared and data/features (and, with
`.read(i)`, of data/raw): rows in the dataset's order as an array-like, labels, names, keys.
"""
import gzip
import hashlib
import json
import os
import shutil
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from .atomic import read_json
from .errors import PipelineError, damaged, no_room
from .npy_stream import NpyRows

CHUNKS = "chunks"
CHUNK_BYTES = 32 * 2**20
_MAX_ROWS = 10**12  # the widest row count a chunk's header keeps room for
KEEP_SHARE = 2 / 3
ARRAY, BYTES = "array", "bytes"  # rows of one shape and dtype, or encoded images
_INDEX_DTYPE = np.dtype([("chunk", "<u4"), ("row", "<u4")])


def _files(directory, split):
    directory = Path(directory)
    return {"chunks": directory / f"{split}_chunks.json",
            "index": directory / f"{split}_index.npy",
            "labels": directory / f"{split}_labels.npy",
            "names": directory / f"{split}_names.json.gz"}


def has_split(directory, split):
    return _files(directory, split)["chunks"].exists()


def chunk_paths(directory, name, kind):
    """The files of chunk `name`: data, keys and (bytes kind) spans."""
    folder = Path(directory) / CHUNKS
    paths = {"data": folder / f"{name}{'.npy' if kind == ARRAY else '.bin'}",
             "keys": folder / f"{name}.keys.npy"}
    if kind == BYTES:
        paths["spans"] = folder / f"{name}.spans.npy"
    return paths


def _load_small(path):
    """A small .npy (keys, spans, an index), its size checked against its header."""
    from .npy_stream import load
    if not Path(path).exists():
        raise damaged(path, "missing")
    return load(path)


class Rows:
    """A split's rows in the dataset's order, read from its chunks: `len`, `shape`, `dtype`,
    `nbytes`, `read(indices)` and numpy-style indexing (`rows[10:20]`, `rows[[3, 1]]`) return
    arrays. Nothing stays resident after a read: memory stays flat whatever the split's size."""

    def __init__(self, chunk_files, index, shape, dtype, where):
        self.chunk_files, self.index, self.where = chunk_files, index, where
        self.shape = (len(index),) + tuple(shape)
        self.dtype = np.dtype(dtype)
        self._readers = {}

    def __len__(self):
        return self.shape[0]

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def _reader(self, chunk):
        if chunk not in self._readers:
            path = self.chunk_files[chunk]
            if not path.exists():
                raise damaged(path, f"missing, though {self.where} names it")
            reader = NpyRows(path)
            if reader.shape[1:] != self.shape[1:] or reader.dtype != self.dtype:
                raise damaged(path, f"rows of {reader.shape[1:]} {reader.dtype} where "
                              f"{self.where} says {self.shape[1:]} {self.dtype}")
            self._readers[chunk] = reader
        return self._readers[chunk]

    def read(self, indices):
        """The rows `indices` (in that order) as one array."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(indices),) + self.shape[1:], self.dtype)
        if not len(indices):
            return out
        if ((indices < 0) | (indices >= len(self))).any():
            raise IndexError(f"row index out of range for {self.where} of {len(self)} rows")
        entries = self.index[indices]
        for chunk in np.unique(entries["chunk"]):
            positions = np.flatnonzero(entries["chunk"] == chunk)
            out[positions] = self._reader(int(chunk)).read(
                entries["row"][positions].astype(np.int64))
        return out

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.read([key])[0]
        if isinstance(key, slice):
            return self.read(np.arange(len(self))[key])
        return self.read(key)

    def __array__(self, dtype=None, copy=None):
        rows = self.read(np.arange(len(self)))
        return rows if dtype is None else rows.astype(dtype)

    def batches(self, batch_size):
        """Consecutive batches of rows, each a fresh array."""
        for start in range(0, len(self), batch_size):
            yield self.read(np.arange(start, min(start + batch_size, len(self))))


class Split:
    """One split of a stored output: `rows` (see Rows; for raw images, `read(i)` gives an
    image's encoded bytes), `labels`, `names`, and `keys` (each row's, read from the chunks'
    manifests)."""

    def __init__(self, directory, split):
        files = _files(directory, split)
        if not files["chunks"].exists():
            raise PipelineError(f"{files['chunks']} is missing: run the earlier stages first "
                                "(dvc repro)")
        meta = read_json(files["chunks"])
        self.directory, self.split, self.kind = Path(directory), split, meta["kind"]
        self.chunk_names = meta["chunks"]
        self.index = _load_small(files["index"])
        self.labels = _load_small(files["labels"]).astype(np.int64)
        try:
            self.names = json.loads(gzip.decompress(files["names"].read_bytes()))
        except FileNotFoundError:
            raise damaged(files["names"], "missing") from None
        except (OSError, EOFError, ValueError) as error:
            raise damaged(files["names"], f"not gzipped JSON: {error}") from None
        if not len(self.index) == len(self.labels) == len(self.names):
            raise damaged(files["index"], f"{len(self.index)} rows where {files['labels'].name} "
                          f"has {len(self.labels)} and {files['names'].name} {len(self.names)}")
        if len(self.index) and self.index["chunk"].max() >= len(self.chunk_names):
            raise damaged(files["index"], f"it names chunk {self.index['chunk'].max()} of "
                          f"{len(self.chunk_names)}")
        self._chunks = [chunk_paths(directory, name, self.kind) for name in self.chunk_names]
        self._spans = {}
        if self.kind == ARRAY:
            self.rows = Rows([paths["data"] for paths in self._chunks], self.index,
                             meta["shape"], meta["dtype"], files["index"])
        self._check_chunks(files["index"])

    def _check_chunks(self, index_path):
        """Every chunk the split reads is there and whole (a stat and a header each), and holds
        the rows the index names, so that a missing or cut file is named before any work."""
        held = [len(self.rows._reader(number)) if self.kind == ARRAY else len(self._span(number))
                for number in range(len(self._chunks))]
        if len(self):
            last = np.zeros(len(self._chunks), np.int64)
            np.maximum.at(last, self.index["chunk"].astype(np.int64),
                          self.index["row"].astype(np.int64))
            for number, row in enumerate(last):
                if row >= held[number]:
                    raise damaged(index_path, f"it names row {row} of "
                                  f"{self._chunks[number]['data']}, which holds {held[number]}")

    def __len__(self):
        return len(self.index)

    @cached_property
    def keys(self):
        """(N, 32) uint8: each row's key, from its chunk's manifest (read once)."""
        keys = np.zeros((len(self), 32), np.uint8)
        for chunk in np.unique(self.index["chunk"]) if len(self) else []:
            positions = np.flatnonzero(self.index["chunk"] == chunk)
            manifest = _load_small(self._chunks[chunk]["keys"])
            rows = self.index["row"][positions].astype(np.int64)
            if rows.max() >= len(manifest):
                raise damaged(self._chunks[chunk]["keys"], f"{len(manifest)} keys where the "
                              f"index of {self.split} names row {rows.max()}")
            keys[positions] = manifest[rows]
        return keys

    def _span(self, chunk):
        if chunk not in self._spans:
            paths = self._chunks[chunk]
            spans = _load_small(paths["spans"])
            if not paths["data"].exists():
                raise damaged(paths["data"], "missing")
            size = paths["data"].stat().st_size
            if len(spans) and spans[-1].sum() > size:
                raise damaged(paths["data"], f"{size} bytes where its spans need "
                              f"{spans[-1].sum()}: cut short")
            self._spans[chunk] = spans
        return self._spans[chunk]

    def locate(self, i):
        """(file, offset, length, name) of encoded image `i`: enough for another process to
        read it."""
        entry = self.index[i]
        offset, length = self._span(int(entry["chunk"]))[int(entry["row"])]
        return (str(self._chunks[int(entry["chunk"])]["data"]), int(offset), int(length),
                self.names[i])

    def read(self, i):
        """The encoded bytes of image `i` (raw images)."""
        path, offset, length, _ = self.locate(i)
        return read_span(path, offset, length)


def read_split(directory, split):
    """Split `split` ("train", "validation", "test", or a stored view such as "train_mirrored")
    of the output `directory` (data/prepared, data/features, data/raw)."""
    return Split(directory, split)


def read_span(path, offset, length):
    with open(path, "rb") as file:
        file.seek(offset)
        data = file.read(length)
    if len(data) != length:
        raise damaged(path, f"an image's {length} bytes at {offset} end after {len(data)}")
    return data


class Earlier:
    """The rows of earlier versions of an output, by key: whole chunks that may be kept, and
    rows to copy from chunks that are not and from outputs in the single-file layout of
    keras-bottleneck 0.4 (one `<split>_<rows>.npy`, or `.bin` with spans, a split), so that an
    upgraded project does no work twice. Built from versions as {relative name: path}."""

    def __init__(self, versions=(), legacy_rows="features"):
        self.chunks = {}   # name -> {"data", "keys", ["spans"], "key_list"}
        self.where = {}    # key bytes -> (chunk name or legacy file, row)
        self._legacy = {}  # legacy file -> reader
        for files in versions:
            self._add_chunks(files)
        for files in versions:
            self._add_legacy(files, legacy_rows)

    def _add_chunks(self, files):
        for relative, path in sorted(files.items()):
            if not (relative.startswith(CHUNKS + "/") and relative.endswith(".keys.npy")):
                continue
            name = relative[len(CHUNKS) + 1:-len(".keys.npy")]
            if name in self.chunks:
                continue
            for kind, suffix in ((ARRAY, ".npy"), (BYTES, ".bin")):
                data = files.get(f"{CHUNKS}/{name}{suffix}")
                spans = files.get(f"{CHUNKS}/{name}.spans.npy")
                if data is not None and (kind == ARRAY or spans is not None):
                    break
            else:
                continue
            keys = np.load(path)
            chunk = {"data": Path(data), "keys": Path(path),
                     "key_list": [key.tobytes() for key in keys]}
            if kind == BYTES:
                chunk["spans"] = Path(spans)
            self.chunks[name] = chunk
            for row, key in enumerate(chunk["key_list"]):
                self.where.setdefault(key, (name, row))

    def _add_legacy(self, files, rows):
        for relative, path in sorted(files.items()):
            if "/" in relative or not relative.endswith("_keys.npy"):
                continue
            split = relative[:-len("_keys.npy")]
            array, data, spans = (files.get(f"{split}_{rows}.npy"),
                                  files.get(f"{split}_images.bin"),
                                  files.get(f"{split}_spans.npy"))
            if array is not None:
                source = ("legacy", str(array))
                self._legacy.setdefault(source, NpyRows(array))
            elif data is not None and spans is not None:
                source = ("legacy", str(data))
                self._legacy.setdefault(source, (Path(data), np.load(spans)))
            else:
                continue
            for row, key in enumerate(np.load(path)):
                self.where.setdefault(key.tobytes(), (source, row))

    def __contains__(self, key):
        return key in self.where

    def keys(self):
        return self.where.keys()

    def read(self, keys, kind):
        """The rows of `keys` (each known), in that order: an array (kind array) or a list of
        bytes."""
        located = [self.where[key] for key in keys]
        if kind == BYTES:
            return [self._read_bytes(source, row) for source, row in located]
        by_source = {}
        for position, (source, row) in enumerate(located):
            by_source.setdefault(source, []).append((position, row))
        out = None
        for source, items in by_source.items():
            positions, rows = zip(*items)
            reader = self._legacy[source] if isinstance(source, tuple) else \
                NpyRows(self.chunks[source]["data"])
            block = reader.read(list(rows))
            if out is None:
                out = np.empty((len(located),) + block.shape[1:], block.dtype)
            out[list(positions)] = block
        return out

    def _read_bytes(self, source, row):
        if isinstance(source, tuple):
            path, spans = self._legacy[source]
        else:
            chunk = self.chunks[source]
            path, spans = chunk["data"], self._chunk_spans(source)
        offset, length = spans[row]
        return read_span(path, int(offset), int(length))

    def _chunk_spans(self, name):
        chunk = self.chunks[name]
        if "span_array" not in chunk:
            chunk["span_array"] = np.load(chunk["spans"])
        return chunk["span_array"]


class Writer:
    """Writes an output's rows as chunks (see the module's docstring).

    `add(key, row)` the rows only this run has (computed, decoded or read from the source),
    in the order they come; `needs(key)` says whether a row must be added (no earlier version
    and no earlier `add` has it). `finish({split: (keys, labels, names)})` then keeps the
    earlier chunks that are mostly still wanted, copies the other wanted rows out of earlier
    versions into new chunks, and writes each split's index."""

    def __init__(self, directory, kind, earlier=None, shape=None, dtype=None):
        self.directory, self.kind = Path(directory), kind
        self.earlier = earlier or Earlier()
        self.shape, self.dtype = (tuple(shape), np.dtype(dtype)) if kind == ARRAY else (None, None)
        (self.directory / CHUNKS).mkdir(parents=True, exist_ok=True)
        self.added = {}     # key -> (new chunk number, row)
        self.new_names = []
        self._file = None   # the chunk being filled, streamed to disk under a temporary name

    def needs(self, key):
        return key not in self.added and key not in self.earlier

    def check_room(self, rows, row_bytes=None):
        """One line, before the work, if `rows` more rows (of `row_bytes`, default the store's)
        would not fit on the disk."""
        needed = rows * (row_bytes or int(np.prod(self.shape)) * self.dtype.itemsize)
        if needed > shutil.disk_usage(self.directory / CHUNKS).free:
            raise no_room(self.directory / CHUNKS / "rows", needed)

    def add(self, key, row):
        """One new row (an array of the store's shape, or encoded bytes) for `key`; a key
        added before is ignored. Rows go straight to disk: memory holds none of them."""
        if key in self.added:
            return
        if self.kind == ARRAY:
            row = np.asarray(row, dtype=self.dtype)
            if row.shape != self.shape:
                raise ValueError(f"row of shape {row.shape} where the store holds {self.shape}")
            data = row.tobytes()
        else:
            data = bytes(row)
        if self._file is not None and self._open_bytes + len(data) > CHUNK_BYTES:
            self._close_chunk()
        if self._file is None:
            self._open_chunk()
        self.added[key] = (len(self.new_names), len(self._open_keys))
        self._file.write(data)
        self._digest.update(data)
        self._open_keys.append(key)
        self._open_lengths.append(len(data))
        self._open_bytes += len(data)

    def _open_chunk(self):
        self._path = self.directory / CHUNKS / f".filling-{len(self.new_names)}"
        self._file = open(self._path, "wb")
        if self.kind == ARRAY:  # room for the header, written once the row count is known
            self._file.write(b" " * len(_npy_header((_MAX_ROWS,) + self.shape, self.dtype)))
        self._digest = hashlib.sha256()
        self._open_keys, self._open_lengths, self._open_bytes = [], [], 0

    def _close_chunk(self):
        if self._file is None:
            return
        keys = np.frombuffer(b"".join(self._open_keys), np.uint8).reshape(-1, 32)
        lengths = np.array(self._open_lengths, np.int64)
        spans = np.stack([np.cumsum(lengths) - lengths, lengths], axis=1)
        header = b""
        if self.kind == ARRAY:
            header = _npy_header((len(keys),) + self.shape, self.dtype,
                                 len(_npy_header((_MAX_ROWS,) + self.shape, self.dtype)))
            self._file.seek(0)
            self._file.write(header)
        self._file.close()
        self._file = None
        name = hashlib.sha256(header + self._digest.digest() + keys.tobytes() +
                              (spans.tobytes() if self.kind == BYTES else b"")).hexdigest()[:32]
        paths = chunk_paths(self.directory, name, self.kind)
        os.replace(self._path, paths["data"])
        np.save(paths["keys"], keys)
        if self.kind == BYTES:
            np.save(paths["spans"], spans)
        self.new_names.append(name)

    def finish(self, splits, block=64):
        """Write the index of each split ({split: (keys as (N, 32) uint8, labels, names)});
        returns how many earlier chunks were kept and how many rows were copied."""
        wanted = {}
        for keys, _, _ in splits.values():
            for key in keys:
                wanted.setdefault(bytes(key), None)
        kept = self._keep(wanted)
        copied = [key for key in wanted if key not in self.added and key not in kept]
        for start in range(0, len(copied), block):
            keys = copied[start:start + block]
            missing = [key for key in keys if key not in self.earlier]
            if missing:
                raise ValueError(f"{len(missing)} rows were neither added nor found earlier")
            for key, row in zip(keys, self.earlier.read(keys, self.kind)):
                self.add(key, row)
        self._close_chunk()
        for name in sorted({name for name, _ in kept.values()}):
            self._link(name)
        for split, (keys, labels, names) in splits.items():
            self._write_index(split, keys, labels, names, kept)
        return len({name for name, _ in kept.values()}), len(copied)

    def _keep(self, wanted):
        """{key: (earlier chunk name, row)} of the earlier chunks kept: greedily, the chunk
        with most wanted rows first, each kept while KEEP_SHARE of its rows are wanted and
        not already held."""
        useful = {}
        for name, chunk in self.earlier.chunks.items():
            count = sum(key in wanted and key not in self.added for key in chunk["key_list"])
            if count:
                useful[name] = count
        kept = {}
        for name in sorted(useful, key=lambda name: (-useful[name], name)):
            rows = [(row, key) for row, key in enumerate(self.earlier.chunks[name]["key_list"])
                    if key in wanted and key not in self.added and key not in kept]
            if len(rows) >= KEEP_SHARE * len(self.earlier.chunks[name]["key_list"]):
                for row, key in rows:
                    kept[key] = (name, row)
        return kept

    def _link(self, name):
        """An earlier chunk into this output as it is: a hard link where the file system
        allows (DVC's cache, this output as a stage run by hand left it), else a copy."""
        chunk = self.earlier.chunks[name]
        for part, target in chunk_paths(self.directory, name, self.kind).items():
            if target.exists():
                continue
            try:
                os.link(chunk[part], target)
            except OSError:
                shutil.copyfile(chunk[part], target)

    def _write_index(self, split, keys, labels, names, kept):
        files = _files(self.directory, split)
        located = []
        for key in map(bytes, keys):
            if key in kept:
                located.append(kept[key])
            else:
                chunk, row = self.added[key]
                located.append((self.new_names[chunk], row))
        used = sorted({name for name, _ in located})
        number = {name: i for i, name in enumerate(used)}
        index = np.array([(number[name], row) for name, row in located], _INDEX_DTYPE)
        meta = {"kind": self.kind, "chunks": used}
        if self.kind == ARRAY:
            meta.update(shape=list(self.shape), dtype=self.dtype.str)
        files["chunks"].write_text(json.dumps(meta, indent=0) + "\n")
        np.save(files["index"], index)
        np.save(files["labels"], np.asarray(labels, dtype=_label_dtype(labels)))
        files["names"].write_bytes(gzip.compress(json.dumps(list(names)).encode(), mtime=0))


def data_bytes(directory):
    """Bytes of the rows stored in output `directory` (chunk data, without manifests and
    indexes)."""
    folder = Path(directory) / CHUNKS
    return sum(path.stat().st_size for path in folder.iterdir()
               if path.suffix in (".npy", ".bin") and not path.name.endswith(
                   (".keys.npy", ".spans.npy"))) if folder.is_dir() else 0


def _label_dtype(labels):
    return np.uint16 if not len(labels) or int(np.max(labels)) < 2**16 else np.int64


def _npy_header(shape, dtype, size=None):
    """The bytes of a .npy header (version 1.0) for an array of `shape` and `dtype`, padded with
    spaces to `size` bytes (a multiple of 64) where given, so that it can be written last over
    the room kept for it."""
    text = (f"{{'descr': {npy_format.dtype_to_descr(dtype)!r}, 'fortran_order': False, "
            f"'shape': {tuple(shape)!r}, }}")
    fixed = len(npy_format.MAGIC_PREFIX) + 4  # magic, version, header length
    size = size or -(-(fixed + len(text) + 1) // 64) * 64
    return (npy_format.MAGIC_PREFIX + bytes([1, 0]) + (size - fixed).to_bytes(2, "little")
            + text.ljust(size - fixed - 1).encode("latin1") + b"\n")
