"""Interrupted and concurrent runs, through the real stage script and the real `dvc` CLI:
a SIGKILLed extract leaves no partial output and the next `dvc repro` rebuilds the very same
bytes; extract is deterministic; a second `dvc repro` started while one runs is refused by
DVC's lock and the first completes intact.

One project serves the module (each stage run imports TensorFlow): preprocess runs once, then
extract uninterrupted (the reference), then killed midway, then two `dvc repro` at once, then
extract once more.
"""
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from _dvc_project import (UP_TO_DATE, contents, declared_outputs, module_project, snapshot,
                          stored_rows, varies)
from conftest import ran_stages
from keras_bottleneck import storage

pytestmark = pytest.mark.slow  # real dvc pipelines, clusters, servers, mounts or benchmarks

# Many images, one per batch: extraction lasts long enough to be caught midway.
DATASET = {"classes": 3, "train": 16, "test": 4}
PARAMS = {"prepare.train_count": 48, "prepare.test_count": 12, "extract.batch_size": 1}
WAIT = 600  # seconds; generous, the machine is shared
UPSTREAM = ["fetch", "preprocess", "backbone"]  # the stages before extract
# DVC's two lock errors: the repo lock (held while DVC itself works) and the per-path rwlock
# (held on a stage's deps and outs while its command runs, when the repo lock is released).
REPO_LOCK_MESSAGE = "Unable to acquire lock"
RWLOCK_MESSAGE = "is busy, it is being blocked by"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    project, _ = module_project(tmp_path_factory, "interruption", DATASET, **PARAMS)
    assert sorted(ran_stages(project.dvc("repro", *UPSTREAM[1:]).stdout)) == sorted(UPSTREAM)
    return project


def extract_outputs(project):
    """{declared output of extract: its snapshot, or None where absent}."""
    return {output: snapshot(project.root / output) if (project.root / output).exists() else None
            for output in declared_outputs(project.root, "extract")}


@pytest.fixture(scope="module")
def reference(prepared):
    """extract's outputs after an uninterrupted run."""
    prepared.run("python", "stages/extract.py")
    outputs = extract_outputs(prepared)
    assert outputs and None not in outputs.values()
    assert varies(stored_rows(prepared.root / "data/features", "train"))
    return outputs


@contextmanager
def started(project, args, log):
    """`python *args` running in the project, in its own process group, killed with all its
    children (a stage under `dvc repro`) if the test stops before it ends."""
    process = subprocess.Popen([sys.executable, *args], cwd=project.root, env=project.env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(condition, process, log_path):
    """Poll `condition` until it returns something true, while `process` runs."""
    deadline = time.monotonic() + WAIT
    while not (found := condition()):
        assert process.poll() is None, (f"finished (exit {process.returncode}) before the "
                                         f"awaited moment:\n{log_path.read_text()}")
        assert time.monotonic() < deadline, f"timed out:\n{log_path.read_text()}"
        time.sleep(0.005)
    return found


def extracting(root):
    """The hidden temporary folder of data/ that extract fills, once it has started to store
    features and while it has not written a split's index (which it does last)."""
    for partial in root.glob("data/.features.tmp-*"):
        if (partial / storage.CHUNKS).is_dir() and not (partial / "train_index.npy").exists():
            return partial
    return None


@pytest.fixture(scope="module")
def killed(prepared, reference, tmp_path_factory):
    """extract SIGKILLed while it writes the train features. As float32, so that it cannot
    reuse the reference's (float16) features and really runs the backbone on every image."""
    log = tmp_path_factory.mktemp("logs") / "extract.log"
    prepared.set_params(**{"extract.dtype": "float32"})
    try:
        with open(log, "w") as out, started(prepared, ["stages/extract.py"], out) as process:
            partial = wait_for(lambda: extracting(prepared.root), process, log)
            time.sleep(0.3)  # into the backbone's work: one image a batch, 60 images
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=WAIT)
    finally:
        prepared.set_params(**{"extract.dtype": PARAMS.get("extract.dtype", "float16")})
    return SimpleNamespace(returncode=process.returncode,
                           finished=(partial / "train_index.npy").exists(),
                           outputs=extract_outputs(prepared),
                           leftover=str(partial.relative_to(prepared.root)))


def test_sigkill_midway_leaves_no_partial_output(killed, reference, prepared):
    assert killed.returncode == -signal.SIGKILL
    assert not killed.finished, "extract was not killed midway"
    # Every output path holds the previous complete result, untouched (same inode and mtime).
    assert killed.outputs == reference
    # The partial file is only in a temporary folder, outside every declared output.
    for output in declared_outputs(prepared.root):
        assert not (killed.leftover + "/").startswith(output + "/"), (killed.leftover, output)


@pytest.fixture(scope="module")
def two_repros(prepared, killed, tmp_path_factory):
    """`dvc repro extract` after the kill, and a second `dvc repro` started while the first
    runs. (Only up to extract: the training stages would add a minute and nothing to show.)"""
    log = tmp_path_factory.mktemp("logs") / "first_repro.log"
    with open(log, "w") as out, started(prepared, ["-m", "dvc", "repro", "extract"], out) as first:
        wait_for(lambda: "Running stage 'extract'" in log.read_text(), first, log)
        second = prepared.dvc("repro", check=False)
        first.wait(timeout=WAIT)
    return SimpleNamespace(first_pid=first.pid, first_returncode=first.returncode,
                           first_ran=ran_stages(log.read_text()),
                           first_log=log.read_text(), second=second,
                           status=prepared.dvc("status", "extract").stdout,
                           outputs=extract_outputs(prepared),
                           leftovers=[p for p in prepared.root.glob("data/.*") if p.is_dir()])


def test_repro_after_kill_rebuilds_the_uninterrupted_features(two_repros, reference):
    assert two_repros.first_returncode == 0, two_repros.first_log
    assert "extract" in two_repros.first_ran
    assert [contents(snap) for snap in two_repros.outputs.values()] == \
        [contents(snap) for snap in reference.values()]
    assert two_repros.leftovers == [], "the killed run's temporary folder was not cleaned up"


@pytest.fixture(scope="module")
def extracted_again(prepared, two_repros):
    """extract run once more, directly, on the inputs that `dvc repro` just extracted."""
    before = extract_outputs(prepared)
    prepared.run("python", "stages/extract.py")
    return SimpleNamespace(before=before, after=extract_outputs(prepared),
                           status=prepared.dvc("status", "extract").stdout,
                           metrics=json.loads((prepared.root / "metrics/extract.json").read_text()))


def test_extract_twice_gives_identical_bytes(extracted_again):
    before, after = extracted_again.before, extracted_again.after
    assert after["data/features"] != before["data/features"], "not rewritten"  # new files...
    assert contents(after["data/features"]) == contents(before["data/features"])
    # ...with the same bytes, so DVC sees the features unchanged: nothing downstream re-runs.
    # (metrics/extract.json differs: its timings, and that this run reused every image.)
    assert "data/features" not in extracted_again.status
    assert extracted_again.metrics["backbone_images"] == 0


def test_second_concurrent_repro_fails_on_the_lock_and_first_completes(two_repros, prepared):
    second = two_repros.second
    assert second.returncode != 0
    blocked_by_first = RWLOCK_MESSAGE in second.stderr and \
        f"(PID {two_repros.first_pid})" in second.stderr
    assert REPO_LOCK_MESSAGE in second.stderr or blocked_by_first, second.stderr
    assert ran_stages(second.stdout) == []
    assert two_repros.first_returncode == 0, two_repros.first_log
    assert two_repros.first_ran == ["extract"]
    assert UP_TO_DATE in two_repros.status
    for stage in UPSTREAM + ["extract"]:
        for output in declared_outputs(prepared.root, stage):
            assert (prepared.root / output).exists(), output
