"""ordered_map: results in order whether the work stays in this process or goes to workers."""
import os

import pytest

from keras_bottleneck.parallel import cores, ordered_map


def square_and_pid(value):
    return value * value, os.getpid()


@pytest.mark.parametrize("alone_seconds", [0, 60])
def test_results_come_in_order(alone_seconds):
    items = ((value,) for value in range(300))
    results = list(ordered_map(square_and_pid, items, chunk_size=7, alone_seconds=alone_seconds))
    assert [square for square, _ in results] == [value * value for value in range(300)]


def test_a_small_job_stays_in_this_process():
    pids = {pid for _, pid in ordered_map(square_and_pid, [(1,), (2,), (3,)])}
    assert pids == {os.getpid()}


@pytest.mark.skipif(cores() < 2, reason="one core: ordered_map never starts workers")
def test_a_long_job_moves_to_workers():
    # With no time alone, every chunk goes to a worker.
    results = ordered_map(square_and_pid, [(value,) for value in range(20)], chunk_size=5,
                          alone_seconds=0)
    assert os.getpid() not in {pid for _, pid in results}
