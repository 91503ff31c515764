"""Incremental processing through the real `dvc repro`: adding, removing or changing images runs
the backbone on those images only (and fetch's check and preprocess's decoding), and the raw,
prepared and feature files are byte for byte those of a from-scratch run on the same data; a
change of what the features depend on re-extracts everything."""
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from _dvc_project import FAST_BACKBONE, module_project
from conftest import (COLORS, Project, make_folder_dataset, make_image, make_project,
                      subprocess_env)

pytestmark = pytest.mark.slow  # real dvc pipelines, clusters, servers, mounts or benchmarks

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
            for path in sorted(data.glob("*/*")) if path.parent.name in STAGE_OUTPUTS}


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
                               scratch_metrics=scratch and stage_metrics(scratch),
                               scratch_data=scratch and data_bytes(scratch),
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


def test_the_first_run_processes_every_image(steps):
    metrics = steps.first.metrics
    assert metrics["extract"]["backbone_images"] == steps.first.total == 21
    assert metrics["extract"]["reused_images"] == 0
    assert metrics["preprocess"]["decoded_images"] == 21
    assert metrics["fetch"]["checked_images"] == metrics["fetch"]["images"] == 21


# The dataset has every image in use: what fetch checks, preprocess decodes and the backbone
# sees is the new and changed images, no more.
@pytest.mark.parametrize("step, new", [("added", 2), ("removed", 0), ("changed", 1)])
def test_only_new_and_changed_images_are_processed(steps, step, new):
    metrics = getattr(steps, step).metrics
    total = getattr(steps, step).total
    assert metrics["extract"]["backbone_images"] == new
    assert metrics["extract"]["reused_images"] == total - new
    assert metrics["preprocess"]["decoded_images"] == new
    assert metrics["preprocess"]["reused_images"] == total - new
    assert metrics["fetch"]["checked_images"] == new and metrics["fetch"]["images"] == total


@pytest.mark.parametrize("step", ["added", "removed", "changed"])
def test_outputs_equal_a_from_scratch_run_byte_for_byte(steps, step):
    result = getattr(steps, step)
    # Really from scratch:
    assert result.scratch_metrics["extract"]["backbone_images"] == result.total
    assert result.scratch_metrics["preprocess"]["decoded_images"] == result.total
    assert result.scratch_metrics["fetch"]["checked_images"] == result.total
    assert set(result.data) == set(result.scratch_data)
    assert {name.split("/")[0] for name in result.data} == set(STAGE_OUTPUTS)
    for name, data in result.scratch_data.items():
        assert result.data[name] == data, name
    train = np.frombuffer(result.data["features/train_features.npy"][-64:], np.uint8)
    assert train.any()  # real features, not zeros
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
