"""Incremental processing through the real `dvc repro`: adding, removing or changing images runs
the backbone on those images only (and fetch's check and preprocess's decoding), and the raw,
prepared and feature files are byte for byte those of a from-scratch run on the same data; a
change of what the features depend on re-extracts everything."""
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from _dvc_project import FAST_BACKBONE, UP_TO_DATE, module_project
from conftest import (COLORS, REPO_ROOT, Project, make_folder_dataset, make_image,
                      make_project, subprocess_env)
from keras_bottleneck import storage


STAGES = ("fetch", "preprocess", "backbone", "extract")
STAGE_OUTPUTS = ("raw", "prepared", "features")


def stage_metrics(project):
    return {stage: json.loads((project.root / "metrics" / f"{stage}.json").read_text())
            for stage in STAGES}


def from_scratch(project, tmp_path):
    """The same images with nothing to reuse: the stage scripts run in a copy without any DVC
    state or earlier outputs."""
    copy = Project(tmp_path / "scratch", project.env)
    shutil.copytree(project.root, copy.root,
                    ignore=shutil.ignore_patterns(".dvc", ".git", *STAGE_OUTPUTS, "models",
                                                  "metrics", "dvc.lock"))
    for stage in STAGES:
        copy.run("python", f"stages/{stage}.py")
    return copy


def data_bytes(project):
    """{path: bytes} of every file of data/raw, data/prepared and data/features."""
    data = project.root / "data"
    return {str(path.relative_to(data)): path.read_bytes()
            for output in STAGE_OUTPUTS for path in sorted((data / output).rglob("*"))
            if path.is_file()}


def stored(project):
    """{output/split: its rows (raw: the images' bytes), labels, names and keys}, as read_split
    gives them: what a from-scratch run must equal, whichever files hold the rows."""
    data, found = project.root / "data", {}
    for output in STAGE_OUTPUTS:
        for index in sorted((data / output).glob("*_index.npy")):
            split = storage.read_split(data / output, index.name[:-len("_index.npy")])
            rows = ([split.read(i) for i in range(len(split))] if split.kind == storage.BYTES
                    else split.rows[:].tobytes())
            found[f"{output}/{split.split}"] = (rows, split.labels.tolist(), split.names,
                                                split.keys.tobytes())
    return found


def add_image(folder, name, seed):
    Image.fromarray(make_image(np.random.default_rng(seed), COLORS[seed % 3], (44, 52))).save(
        folder / name)


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """One project walked through each change, `dvc repro extract` after each; all train images
    used, a validation split held out of them."""
    project, images = module_project(tmp_path_factory, "incremental",
                                     dataset={"classes": 3, "train": 5, "test": 2},
                                     **{"prepare.train_count": 15,
                                        "prepare.validation_count": 3})

    def repro(compare=True):
        train_count = len(list((images / "train").rglob("*.png")))
        project.set_params(**{"prepare.train_count": train_count})
        project.repro("extract")
        scratch = from_scratch(project, tmp_path_factory.mktemp("scratch")) if compare else None
        return SimpleNamespace(metrics=stage_metrics(project), data=data_bytes(project),
                               stored=stored(project),
                               scratch_metrics=scratch and stage_metrics(scratch),
                               scratch_stored=scratch and stored(scratch),
                               total=train_count + 6)

    first = repro(compare=False)  # nothing to reuse: it is the from-scratch run
    add_image(images / "train" / "class_1", "010.png", 1)
    add_image(images / "train" / "class_2", "011.png", 2)
    added = repro()
    (images / "train" / "class_0" / "002.png").unlink()
    removed = repro()
    add_image(images / "test" / "class_2", "001.png", 7)  # overwrites a test image
    changed = repro()
    return SimpleNamespace(project=project, first=first, added=added, removed=removed,
                           changed=changed)


@pytest.mark.slow  # the real dvc on a project copy
def test_the_first_run_processes_every_image(steps):
    metrics = steps.first.metrics
    assert metrics["extract"]["backbone_images"] == steps.first.total == 21
    assert metrics["extract"]["reused_images"] == 0
    assert metrics["preprocess"]["decoded_images"] == 21
    assert metrics["fetch"]["checked_images"] == metrics["fetch"]["images"] == 21


# The dataset has every image in use: what fetch checks, preprocess decodes and the backbone
# sees is the new and changed images, no more.
@pytest.mark.slow  # the real dvc on a project copy
@pytest.mark.parametrize("step, new", [("added", 2), ("removed", 0), ("changed", 1)])
def test_only_new_and_changed_images_are_processed(steps, step, new):
    metrics = getattr(steps, step).metrics
    total = getattr(steps, step).total
    assert metrics["extract"]["backbone_images"] == new
    assert metrics["extract"]["reused_images"] == total - new
    assert metrics["preprocess"]["decoded_images"] == new
    assert metrics["preprocess"]["reused_images"] == total - new
    assert metrics["fetch"]["checked_images"] == new and metrics["fetch"]["images"] == total


@pytest.mark.slow  # the real dvc on a project copy
@pytest.mark.parametrize("step", ["added", "removed", "changed"])
def test_outputs_hold_the_rows_of_a_from_scratch_run_byte_for_byte(steps, step):
    """The same rows, labels, names and keys in the dataset's order; how rows are grouped into
    chunk files may differ (an incremental run adds chunks, a run from scratch writes one)."""
    result = getattr(steps, step)
    # Really from scratch:
    assert result.scratch_metrics["extract"]["backbone_images"] == result.total
    assert result.scratch_metrics["preprocess"]["decoded_images"] == result.total
    assert result.scratch_metrics["fetch"]["checked_images"] == result.total
    assert set(result.stored) == set(result.scratch_stored)
    assert {name.split("/")[0] for name in result.stored} == set(STAGE_OUTPUTS)
    for name, data in result.scratch_stored.items():
        assert result.stored[name] == data, name
    train = np.frombuffer(result.stored["features/train"][0][-64:], np.uint8)
    assert train.any()  # real features, not zeros


@pytest.mark.slow  # the real dvc on a project copy
def test_each_step_keeps_the_earlier_chunks_it_still_uses_as_the_same_files(steps):
    """Adding images adds chunks and keeps every earlier one as it was."""
    first, added = steps.first.data, steps.added.data
    for output in STAGE_OUTPUTS:
        before = {name for name in first if name.startswith(f"{output}/chunks/")}
        assert before and before <= set(added), output
        assert all(added[name] == first[name] for name in before)
        assert len({name for name in added if name.startswith(f"{output}/chunks/")}) > \
            len(before)


@pytest.mark.slow  # the real dvc on a project copy
def test_the_same_state_gives_the_same_bytes(steps):
    """Forced again from the same inputs and DVC cache, the stages write the very same files:
    DVC sees nothing new."""
    project = steps.project
    before = data_bytes(project)
    project.dvc("repro", "--force", "--single-item", "fetch")
    project.dvc("repro", "--force", "--single-item", "preprocess")
    project.dvc("repro", "--force", "--single-item", "extract")
    assert data_bytes(project) == before
@pytest.mark.slow  # the real dvc on a project copy
@pytest.mark.parametrize("change", [{"prepare.img_size": 96}, {"backbone.name": "resnet50"}])
def test_what_the_features_depend_on_re_extracts_everything(steps, change):
    project = steps.project
    before = project.params()
    try:
        project.set_params(**change)
        project.repro("extract")
        metrics = stage_metrics(project)
        assert metrics["extract"]["reused_images"] == 0
        assert metrics["extract"]["backbone_images"] == steps.changed.total
        if "prepare.img_size" in change:  # images at another size are decoded again
            assert metrics["preprocess"]["decoded_images"] == steps.changed.total
    finally:
        project.set_params(**{key: before[key.split(".")[0]][key.split(".")[1]]
                              for key in change})


@pytest.mark.slow  # the real dvc on a project copy
def test_parts_extracted_on_other_machines_are_reused(tmp_path):
    """docs/incremental.md, "Outgrowing one machine": two clones each extract a part of the images on a
    branch of their own and push it with the run-cache; the machine that trains fetches every
    branch and the run-cache, and its `dvc repro` on the whole dataset processes no image a part
    already covered."""
    whole = make_folder_dataset(tmp_path / "images", classes=2, train=4, test=1)
    parts = [tmp_path / "part1", tmp_path / "part2"]
    for path in whole.rglob("*.png"):
        relative = path.relative_to(whole)
        for number, part in enumerate(parts):  # train images 0-1 and 2-3; the test ones both
            if relative.parts[0] == "test" or int(path.stem) // 2 == number:
                (part / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, part / relative)
    env = subprocess_env(tmp_path)
    trainer = make_project(tmp_path / "trainer", env, whole, **FAST_BACKBONE,
                           **{"prepare.train_count": 8, "prepare.test_count": 2})
    trainer.dvc("remote", "add", "-d", "shared", tmp_path / "remote")
    trainer.commit("a remote the machines share")

    for number, part in enumerate(parts, 1):
        machine = Project(tmp_path / f"machine{number}", env)
        trainer.run("git", "clone", "-q", trainer.root, machine.root)
        machine.run("git", "checkout", "-qb", f"part{number}")
        machine.set_params(**{"data.path": str(part), "prepare.train_count": 4})
        machine.repro("extract")
        assert machine.metrics("extract")["backbone_images"] == 6  # 4 train, 2 test
        machine.commit(f"part {number}")
        machine.dvc("push", "--run-cache")
        machine.run("git", "push", "-q", "origin", f"part{number}")

    trainer.dvc("fetch", "--all-branches", "--run-cache")
    assert sorted(trainer.repro("extract")) == ["backbone", "extract", "fetch", "preprocess"]
    extracted = trainer.metrics("extract")
    assert extracted["backbone_images"] == 0 and extracted["reused_images"] == 10
    assert trainer.metrics("preprocess")["decoded_images"] == 0
    assert trainer.metrics("fetch")["checked_images"] == 0


def cache_objects(folder):
    """{relative path: size} of the objects in a DVC cache or local remote."""
    folder = Path(folder)
    return {path.relative_to(folder).as_posix(): path.stat().st_size
            for path in folder.rglob("*") if path.is_file()} if folder.exists() else {}


def chunk_keys(output):
    """{chunk file name: the keys its rows hold} of a stored output."""
    folder = Path(output) / storage.CHUNKS
    return {path.name.replace(".keys.npy", ""): {key.tobytes() for key in np.load(path)}
            for path in folder.glob("*.keys.npy")}


@pytest.mark.slow  # the real dvc on a project copy
def test_adding_images_pushes_and_pulls_only_the_new_files(tmp_path):
    """A pushes, B pulls; A adds 3 photos, repros and pushes: only new chunk files (holding
    only the new photos' rows) and the small indexes go up, B's `dvc pull` fetches just those,
    and B then has nothing to reproduce."""
    images = make_folder_dataset(tmp_path / "images", classes=3, train=6, test=2)
    env = subprocess_env(tmp_path)
    a = make_project(tmp_path / "a", env, images, **FAST_BACKBONE,
                     **{"prepare.train_count": 18, "prepare.test_count": 6})
    remote = tmp_path / "remote"
    a.dvc("remote", "add", "-d", "shared", remote)
    a.repro("extract")
    a.commit("first")
    a.dvc("push")
    first_push = cache_objects(remote)
    before = {output: chunk_keys(a.root / "data" / output) for output in STAGE_OUTPUTS}
    b = Project(tmp_path / "b", env)
    a.run("git", "clone", "-q", a.root, b.root)
    b.dvc("pull", "--with-deps", "extract")

    for seed, folder in enumerate(sorted((images / "train").iterdir()), 20):
        add_image(folder, "100.png", seed)
    a.set_params(**{"prepare.train_count": 21})
    assert a.repro("extract") == ["fetch", "preprocess", "extract"]
    a.commit("3 photos more")
    a.dvc("push")
    second_push = {name: size for name, size in cache_objects(remote).items()
                   if name not in first_push}

    new_keys = set()
    for output in STAGE_OUTPUTS:
        after = chunk_keys(a.root / "data" / output)
        assert set(before[output]) <= set(after)  # every earlier chunk still in use, as it was
        added = {name: keys for name, keys in after.items() if name not in before[output]}
        assert len(added) == 1 and len(next(iter(added.values()))) == 3, output
        new_keys |= next(iter(added.values()))
    # What went up: the new chunks (3 rows each) and the indexes, a small part of the first push.
    assert 0 < sum(second_push.values()) < 0.35 * sum(first_push.values())
    new_chunk_files = 3 + 2 + 2  # raw .bin/.keys/.spans, prepared and features .npy/.keys
    changed_indexes = 3 * 4  # the train split's 4 index files in each output
    listings = 3  # DVC's listing of each directory output
    assert len(second_push) <= new_chunk_files + changed_indexes + listings

    b_cache = cache_objects(b.root / ".dvc" / "cache")
    b.run("git", "pull", "-q", "origin", "HEAD")
    b.dvc("pull", "--with-deps", "extract")
    downloaded = {name for name in cache_objects(b.root / ".dvc" / "cache") if name not in b_cache}
    assert downloaded == set(second_push)
    assert UP_TO_DATE in b.dvc("status", "--with-deps", "extract").stdout
    assert b.repro("extract") == []


# The last commit whose outputs are in the single-file layout (one <split>_features.npy, ...).
SINGLE_FILE_LAYOUT = "6a22690"


@pytest.mark.slow  # the real dvc on a project copy
def test_a_project_made_with_the_single_file_layout_reuses_every_row_after_the_upgrade(
        tmp_path):
    """A project whose outputs that version of the code wrote (its own package copy first on
    the path), then this code: nothing is checked, decoded or extracted again, and the rows
    are the old files' rows, in order."""
    old_code = tmp_path / "old_code"
    old_code.mkdir()
    archive = subprocess.run(["git", "archive", SINGLE_FILE_LAYOUT], cwd=REPO_ROOT,
                             capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip(f"commit {SINGLE_FILE_LAYOUT} is not in this clone's history")
    subprocess.run(["tar", "-x", "-C", old_code], input=archive.stdout, check=True)
    images = make_folder_dataset(tmp_path / "images", classes=3, train=4, test=2)
    env = subprocess_env(tmp_path)
    project = make_project(tmp_path / "project", env, images, **FAST_BACKBONE)
    new_code = {name: (project.root / name).read_bytes() for name in ("dvc.yaml",)}
    shutil.rmtree(project.root / "keras_bottleneck")
    shutil.rmtree(project.root / "stages")
    for name in ("keras_bottleneck", "stages"):
        shutil.copytree(old_code / name, project.root / name)
    shutil.copy(old_code / "dvc.yaml", project.root / "dvc.yaml")
    old = Project(project.root, {**env, "PYTHONPATH": str(project.root)})
    old.repro("extract")
    old.commit("outputs of the single-file layout")
    features = project.root / "data" / "features"
    assert (features / "train_features.npy").exists()
    old_rows = {split: np.load(features / f"{split}_features.npy") for split in ("train", "test")}

    for name in ("keras_bottleneck", "stages"):
        shutil.rmtree(project.root / name)
        shutil.copytree(REPO_ROOT / name, project.root / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (project.root / "dvc.yaml").write_bytes(new_code["dvc.yaml"])
    project.commit("upgrade")
    ran = project.repro("extract")
    assert "extract" in ran
    metrics = stage_metrics(project)
    assert metrics["extract"]["backbone_images"] == 0
    assert metrics["extract"]["reused_images"] == metrics["extract"]["images"] == 18
    assert metrics["preprocess"]["decoded_images"] == 0
    assert metrics["fetch"]["checked_images"] == 0
    for split, rows in old_rows.items():
        np.testing.assert_array_equal(storage.read_split(features, split).rows[:], rows)


def test_earlier_versions_are_found_by_fingerprint_and_their_chunks_reused(tmp_path):
    """Without DVC: a stage run by hand finds its own earlier output in the workspace when the
    fingerprint is the same, and skips it (counting it) when it is not."""
    from keras_bottleneck import incremental
    output = tmp_path / "data" / "features"
    writer = storage.Writer(output, storage.ARRAY, None, (2,), np.float16)
    key = np.frombuffer(b"k" * 32, np.uint8).reshape(1, 32)
    writer.add(key.tobytes(), np.ones(2))
    writer.finish({"train": (key, [0], ["train/a/0.png"])})
    (output / incremental.FINGERPRINT).write_text(json.dumps({"dtype": "float16"}))

    earlier, found, other = incremental.find_earlier(output, {"dtype": "float16"},
                                                     lock_path=tmp_path / "dvc.lock")
    assert (found, other) == (1, 0) and key.tobytes() in earlier
    assert not storage.Writer(tmp_path / "new", storage.ARRAY, earlier, (2,),
                              np.float16).needs(key.tobytes())
    earlier, found, other = incremental.find_earlier(output, {"dtype": "float32"},
                                                     lock_path=tmp_path / "dvc.lock")
    assert (found, other) == (0, 1) and key.tobytes() not in earlier
    # Row keys are the SHA-256 of each row's bytes, read through the store.
    rows = storage.read_split(output, "train").rows
    assert incremental.row_keys(rows)[0].tobytes() == \
        hashlib.sha256(np.ones(2, np.float16).tobytes()).digest()
