"""A project that has run its whole pipeline once, shared by test_remote.py and
test_experiments.py: `dvc repro` takes about a minute here, so the session pays for it once and
each test works on its own copy (git repo, DVC cache and outputs)."""
import shutil
from pathlib import Path

import pytest

from conftest import Project, make_folder_dataset, make_project, subprocess_env

STAGES = ["fetch", "preprocess", "backbone", "extract", "train_head", "train_frozen", "finetune",
          "export", "evaluate", "audit"]
IMAGES = "data/source/images"

# VGG16 without weights: quicker here than the default ResNet50, and its random features are not
# all zero (MobileNet's underflow in float16), so that training longer changes the metrics.
BACKBONE = {"backbone.name": "vgg16"}


# Each test module that imports the session fixture below gets its own instance of it, so the
# project is kept here to build it once per session all the same.
_template = {}


@pytest.fixture(scope="session")
def ran_project_template(tmp_path_factory):
    """The tiny folder dataset inside the project, tracked with `dvc add` as the README says
    (so that clones and queued experiments get it), the pipeline run, everything committed."""
    if "project" not in _template:
        root = tmp_path_factory.mktemp("ran_project")
        project = make_project(root / "project", subprocess_env(root), IMAGES, **BACKBONE)
        make_folder_dataset(project.root / IMAGES)
        project.dvc("add", IMAGES)
        assert sorted(project.repro()) == sorted(STAGES)
        project.commit("run the pipeline")
        _template["project"] = project
    return _template["project"]


@pytest.fixture
def ran_project(ran_project_template, tmp_path):
    """This test's own copy of the project that has run its pipeline."""
    root = tmp_path / "project"
    shutil.copytree(ran_project_template.root, root,
                    ignore=lambda folder, names: ["tmp"] if Path(folder).name == ".dvc" else [])
    return Project(root, subprocess_env(tmp_path))
