"""Fixtures shared by the tests: tiny datasets the tests make, and a real DVC project in a
temporary git repo running the real `dvc` CLI."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from keras_bottleneck.datasets import RawSplit
from keras_bottleneck.images import load_rgb

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
SHARED_CIFAR_JPG = SHARED / "datasets" / "cifar10-jpg-12k.tar.gz"
SHARED_MOBILENET = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"

# What a project copy needs: the pipeline's code and config, not its outputs.
PROJECT_FILES = ["keras_bottleneck", "stages", "dvc.yaml", "params.yaml", "data/source",
                 "data/exclude.txt", ".dvc/config",
                 ".dvcignore", ".gitignore"]

# Small and quick: 64 px is the smallest size at which ResNet50's 2x2 feature map still fits
# the default head's 2x2 Conv2D.
TINY_PARAMS = {
    "prepare.img_size": 64,
    "prepare.train_count": 12,
    "prepare.test_count": 6,
    "backbone.weights": "none",
    "train_head.epochs": 1,
    "train_frozen.epochs": 1,
    "finetune.epochs": 1,
}

COLORS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 220, 40)]


def make_image(rng, color, shape=(40, 48)):
    """A noisy image of one dominant color, so that classes are learnable."""
    pixels = np.array(color) + rng.normal(0, 25, shape + (3,))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def make_folder_dataset(root, classes=3, train=4, test=2, shape=(40, 48), seed=0):
    """train/<class>/*.png and test/<class>/*.png under `root`; returns `root`."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, count in (("train", train), ("test", test)):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(make_image(rng, COLORS[c % len(COLORS)], shape)).save(
                    folder / f"{i:03d}.png")
    return root


def read_raw(directory, split):
    """SimpleNamespace(images=decoded arrays, labels, names) of one split of a raw dataset."""
    raw = RawSplit(directory, split)
    return SimpleNamespace(images=[load_rgb(raw.read(i)) for i in range(len(raw))],
                           labels=raw.labels, names=raw.names)


def live_history(directory, metric):
    """(steps, values) that dvclive logged for `metric` (e.g. "eval/accuracy") in `directory`."""
    path = Path(directory) / "plots" / "metrics" / f"{metric}.tsv"
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    return [int(row["step"]) for row in rows], [float(row[metric.split("/")[-1]]) for row in rows]


def set_params(params_path, **dotted):
    """Set params given as section.key=value (like `dvc exp run -S`) in a params.yaml."""
    params = yaml.safe_load(Path(params_path).read_text())
    for dotted_key, value in dotted.items():
        section, key = dotted_key.split(".", 1)
        params.setdefault(section, {})[key] = value
    Path(params_path).write_text(yaml.safe_dump(params, sort_keys=False))


def subprocess_env(tmp_path):
    env = dict(os.environ)
    env["KERAS_HOME"] = str(tmp_path / "keras_home")  # writable; no stray downloads shared
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.setdefault("GIT_AUTHOR_NAME", "tests")
    env.setdefault("GIT_AUTHOR_EMAIL", "tests@example.com")
    env.setdefault("GIT_COMMITTER_NAME", "tests")
    env.setdefault("GIT_COMMITTER_EMAIL", "tests@example.com")
    return env


class Project:
    """A copy of this project in its own git repo, driven through the real CLIs."""

    def __init__(self, root, env):
        self.root, self.env = Path(root), env

    def run(self, *args, check=True, timeout=900):
        """Run a command in the project; `dvc` and `python` run with this interpreter."""
        args = [str(a) for a in args]
        if args[0] == "dvc":
            args = [sys.executable, "-m", "dvc"] + args[1:]
        elif args[0] == "python":
            args = [sys.executable] + args[1:]
        result = subprocess.run(args, cwd=self.root, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n"
                                 f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def dvc(self, *args, **kwargs):
        return self.run("dvc", *args, **kwargs)

    def set_params(self, **dotted):
        set_params(self.root / "params.yaml", **dotted)

    def params(self):
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def metrics(self, stage):
        return json.loads((self.root / "metrics" / f"{stage}.json").read_text())

    def commit(self, message="update"):
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message, "--allow-empty")

    def repro(self, *args):
        """`dvc repro`; returns the names of the stages that actually ran."""
        result = self.dvc("repro", *args)
        return ran_stages(result.stdout)


def ran_stages(dvc_output):
    """Stages DVC ran (not skipped nor restored from the run-cache), from its output."""
    return [line.split("'")[1] for line in dvc_output.splitlines()
            if line.startswith("Running stage '")]


def make_project(root, env, dataset, **params):
    """Copy the project to `root`, point it at `dataset` with TINY_PARAMS (+ `params`),
    `git init`, commit."""
    root = Path(root)
    for name in PROJECT_FILES:
        source, target = REPO_ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    project = Project(root, env)
    project.set_params(**{"data.source": "folder", "data.path": str(dataset),
                          **TINY_PARAMS, **params})
    project.run("git", "init", "-q")
    project.commit("project")
    return project


@pytest.fixture
def env(tmp_path):
    return subprocess_env(tmp_path)


@pytest.fixture
def folder_dataset(tmp_path):
    return make_folder_dataset(tmp_path / "images")


@pytest.fixture
def project(tmp_path, env, folder_dataset):
    """A fresh project copy on a tiny folder dataset, nothing run yet."""
    return make_project(tmp_path / "project", env, folder_dataset)


@pytest.fixture
def in_tmp_cwd(tmp_path, monkeypatch):
    """Run library code as a stage would: from a project-like working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def needs_shared(*paths):
    """Skip, with the reason, where ../shared (the team's real data) is absent."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"real data not available on this machine "
                              f"(needs {', '.join(missing)}; ../shared exists only on the team's "
                              "machines and CI)")


# The slowest modules first: with `-n 2` (pytest-xdist, --dist loadfile) each then runs beside
# the quicker ones instead of last and alone. The order within a module is kept.
SLOWEST_FIRST = ["test_real_data.py", "test_pipeline.py", "test_cluster.py", "test_incremental.py",
                 "test_remote.py",
                 "test_experiments.py"]


# The slow tier (`-m slow`; the quick one is `-m "not slow"`): a test that takes one of these
# fixtures runs the real `dvc` on a project copy or starts a server; whole modules that start
# clusters, mounts or benchmarks say so themselves (pytestmark = pytest.mark.slow).
SLOW_FIXTURES = {"project", "ran_project", "ran_project_template", "s3_server"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {name: position for position, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
