"""Incremental extraction through the real `dvc repro`: adding, removing or changing images runs
the backbone on those images only, and the features are byte for byte those of a from-scratch
extraction of the same data; a change of what the features depend on re-extracts everything."""
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from _dvc_project import module_project
from conftest import COLORS, Project, make_image

SPLITS = ("train", "validation", "test")
FEATURE_FILES = [f"{split}_{kind}.npy" for split in SPLITS for kind in ("features", "keys",
                                                                        "labels")]


def extracted(project):
    return json.loads((project.root / "metrics" / "extract.json").read_text())


def from_scratch(project, tmp_path):
    """The same prepared images extracted with nothing to reuse: the extract script run in a
    copy without any DVC state or earlier features."""
    copy = Project(tmp_path / "scratch", project.env)
    shutil.copytree(project.root, copy.root,
                    ignore=shutil.ignore_patterns(".dvc", ".git", "features", "models", "metrics",
                                                  "dvc.lock"))
    copy.run("python", "stages/extract.py")
    return copy


def feature_bytes(project):
    return {name: (project.root / "data" / "features" / name).read_bytes()
            for name in FEATURE_FILES + ["fingerprint.json"]}


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
        return SimpleNamespace(metrics=extracted(project), features=feature_bytes(project),
                               scratch_metrics=scratch and extracted(scratch),
                               scratch_features=scratch and feature_bytes(scratch),
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


def test_the_first_run_extracts_every_image(steps):
    assert steps.first.metrics["backbone_images"] == steps.first.total == 21
    assert steps.first.metrics["reused_images"] == 0


@pytest.mark.parametrize("step, ran", [("added", 2), ("removed", 0), ("changed", 1)])
def test_only_new_and_changed_images_go_through_the_backbone(steps, step, ran):
    result = getattr(steps, step)
    assert result.metrics["backbone_images"] == ran
    assert result.metrics["reused_images"] == result.total - ran


@pytest.mark.parametrize("step", ["added", "removed", "changed"])
def test_features_equal_a_from_scratch_extraction_byte_for_byte(steps, step):
    result = getattr(steps, step)
    assert result.scratch_metrics["backbone_images"] == result.total  # really from scratch
    for name, data in result.scratch_features.items():
        assert result.features[name] == data, name
    train = np.frombuffer(result.features["train_features.npy"][-64:], np.uint8)
    assert train.any()  # real features, not zeros
@pytest.mark.parametrize("change", [{"prepare.img_size": 96}, {"backbone.name": "resnet50"}])
def test_what_the_features_depend_on_re_extracts_everything(steps, change):
    project = steps.project
    before = project.params()
    try:
        project.set_params(**change)
        project.repro("extract")
        metrics = extracted(project)
        assert metrics["reused_images"] == 0
        assert metrics["backbone_images"] == steps.changed.total
    finally:
        project.set_params(**{key: before[key.split(".")[0]][key.split(".")[1]]
                              for key in change})
