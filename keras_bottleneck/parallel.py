"""Map a function over a stream on every core, in order, holding only a few chunks at once.

multiprocessing's imap and concurrent.futures' map read their whole input ahead (before Python
3.14), so a stream of encoded photos would pile up in memory; here at most `window` chunks are
in flight. A worker that dies (killed for memory, say) fails the map with BrokenProcessPool
instead of hanging it, as multiprocessing.Pool would.
"""
import itertools
import multiprocessing
import os
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor


def cores():
    """Cores this process may run on (its CPU affinity, e.g. a container's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def apply_each(function, chunk):
    """function(*item) for each item of `chunk`: one task's work."""
    return [function(*item) for item in chunk]


def chunks_of(items, chunk_size, chunk_bytes):
    """Lists of up to `chunk_size` items, closed early once the bytes objects in them reach
    `chunk_bytes`: many small images share a task (a task costs milliseconds), few big ones."""
    chunk, size = [], 0
    for item in items:
        chunk.append(item)
        size += sum(len(part) for part in item if isinstance(part, bytes))
        if len(chunk) == chunk_size or size >= chunk_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def ordered_map(function, items, chunk_size=64, chunk_bytes=8 << 20, processes=None,
                alone_seconds=0.5):
    """Yield function(*item) for each tuple in `items`, in order. `function` must be a
    module-level function (it is sent to worker processes). Work starts in this process, and
    workers start only if it is not done after `alone_seconds`, about what starting them costs:
    the few images of a small or incremental run are done before a pool would be up."""
    processes = processes or cores()
    chunks = chunks_of(items, chunk_size, chunk_bytes)
    started = time.perf_counter()
    while (chunk := next(chunks, None)) is not None:
        if processes > 1 and time.perf_counter() - started >= alone_seconds:
            yield from _pooled(function, itertools.chain([chunk], chunks), processes)
            return
        yield from apply_each(function, chunk)


def _pooled(function, chunks, processes):
    # Workers start as fresh interpreters: a forked one would share (and count, in its resident
    # memory) every page of its parent, whose index grows with the dataset, and forking a process
    # whose TensorFlow threads hold locks (predict) can deadlock the child.
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = deque()
        try:
            while True:
                while len(pending) < 2 * processes and (chunk := next(chunks, None)):
                    pending.append(pool.submit(apply_each, function, chunk))
                if not pending:
                    return
                yield from pending.popleft().result()
        finally:
            for future in pending:  # the consumer stopped early or failed: drop the rest
                future.cancel()
