"""Bad input through the real stage scripts: exit code 1, one `error:` line naming the problem as
the last line of stderr, no traceback, and no new file in data/, models/ or metrics/."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from keras_bottleneck import storage

pytestmark = pytest.mark.slow  # real dvc pipelines, clusters, servers, mounts or benchmarks

OUTPUT_DIRS = ("data", "models", "metrics")


def outputs(project):
    return {path.relative_to(project.root) for name in OUTPUT_DIRS
            for path in (project.root / name).rglob("*")}


def run_failing(project, stage):
    before = outputs(project)
    result = project.run("python", f"stages/{stage}.py", check=False, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ")
    assert outputs(project) == before
    return last_line


def truncate_a_jpeg(dataset):
    bad = dataset / "train" / "class_1" / "zz.jpg"
    Image.open(dataset / "train" / "class_1" / "000.png").save(bad)
    bad.write_bytes(bad.read_bytes()[:200])
    return f"{bad}: not a readable image"


def remove_test_split(dataset):
    for path in sorted((dataset / "test").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (dataset / "test").rmdir()
    return "no train/ and test/ folders"


def keep_one_class(dataset):
    for split in ("train", "test"):
        for folder in (dataset / split).iterdir():
            if folder.name != "class_0":
                for path in folder.iterdir():
                    path.unlink()
                folder.rmdir()
    return "a classifier needs two or more"


# (stage, params to set, what to do to the dataset -> expected text, or the expected text)
CASES = {
    "missing data.path": ("fetch", {"data.path": "no/such/folder"}, None,
                          "data.path no/such/folder does not exist"),
    "truncated jpeg": ("fetch", {}, truncate_a_jpeg, None),
    "no test split": ("fetch", {}, remove_test_split, None),
    "a single class": ("fetch", {}, keep_one_class, None),
    "string for a count": ("fetch", {"prepare.train_count": "lots"}, None,
                           "prepare.train_count = 'lots' is invalid"),
    "unknown backbone": ("extract", {"backbone.name": "resnet5O"}, None,
                         "backbone.name 'resnet5O' is unknown"),
    "zero epochs": ("train_head", {"train_head.epochs": 0}, None,
                    "train_head.epochs = 0 is invalid"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_with_one_line(project, folder_dataset, case):
    stage, params, damage, expected = CASES[case]
    project.set_params(**params)
    if damage:
        expected = damage(folder_dataset)
    assert expected in run_failing(project, stage)


def test_too_many_images_asked_for(project):
    # fetch works (and warns about the misspelt key); preprocess then fails before writing.
    project.set_params(**{"prepare.train_cuont": 5})
    fetched = project.run("python", "stages/fetch.py")
    assert "unknown key prepare.train_cuont" in fetched.stderr
    assert storage.has_split(project.root / "data" / "raw", "train")

    project.set_params(**{"prepare.train_count": 13})  # the tiny dataset has 12
    last_line = run_failing(project, "preprocess")

    assert "prepare.train_count 13 is more than the 12 train images" in last_line
    assert not (project.root / "data" / "prepared").exists()
    assert not (project.root / "metrics" / "first_images.png").exists()


def cut_short(path, count=200):
    """A copy of `path` cut short put in its place (a new file: outputs are hard links to the
    cache, which writing in place as root would damage too)."""
    whole = path.read_bytes()
    path.unlink()
    path.write_bytes(whole[:-count])


def chunk_of(root, output, split="train"):
    """The first chunk file (rows) the split of a stored output reads, relative to `root`."""
    stored = storage.read_split(root / output, split)
    path, _, _, _ = stored.locate(0) if stored.kind == storage.BYTES else (
        stored.rows.chunk_files[0], 0, 0, "")
    return str(Path(path).relative_to(root) if Path(path).is_absolute() else path)


# (the file damaged, the stage that reads it, the DVC output that holds it, who writes that)
DAMAGED = [(lambda root: chunk_of(root, "data/raw"), "preprocess", "data/raw", "fetch"),
           (lambda root: chunk_of(root, "data/prepared"), "extract", "data/prepared",
            "preprocess"),
           (lambda root: "models/backbone/backbone.bin", "extract", "models/backbone",
            "backbone"),
           (lambda root: chunk_of(root, "data/features"), "train_head", "data/features",
            "extract"),
           (lambda root: "data/features/train_labels.npy", "train_head", "data/features",
            "extract")]


def test_a_file_cut_short_is_named_with_the_fix_and_nothing_trains_on_it(project):
    """A copy cut short or a disk that filled: no stage reads past the end of a file (before,
    train_head trained on uninitialised rows, loss nan, and exited 0); the fix it names works."""
    project.repro("extract")
    for locate, stage, output, writer in DAMAGED:
        name = locate(project.root)
        path = project.root / name
        whole = path.read_bytes()
        cut_short(path)

        last_line = run_failing(project, stage)

        shown = name.replace("backbone.bin", "backbone.xml")  # OpenVINO reads both
        assert f"error: {shown} is damaged (" in last_line, last_line
        assert (f"restore it with `dvc checkout --force {output}`, or rebuild it with "
                f"`dvc repro --force {writer}`") in last_line
        project.dvc("checkout", "--force", output)
        assert path.read_bytes() == whole, name
    assert project.repro("train_head") == ["train_head"]  # on the restored features


def run_on_a_small_disk(project, tmp_path, commands, free):
    """Run `commands` (shell) in a copy of the project on a tmpfs of its own (mounted in a mount
    namespace of this test's, so nothing outside sees it) left with `free` bytes; then free
    the disk and `dvc repro` again. Returns {name: text} of what each step printed."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a full disk is made with a tmpfs in a mount namespace: needs root and "
                    "unshare")
    disk, logs = tmp_path / "disk", tmp_path / "logs"
    disk.mkdir()
    logs.mkdir()
    script = f"""
        mount -t tmpfs -o size=512m tmpfs {disk} || exit 77
        cp -a {project.root} {disk}/project && cd {disk}/project
        free=$(df --output=avail -B1 . | tail -1)
        fallocate -l $((free - {free})) {disk}/filler
        ({commands}) >{logs}/full.out 2>{logs}/full.err; echo $? >{logs}/full.rc
        find data models metrics | sort >{logs}/outputs
        rm {disk}/filler
        {sys.executable} -m dvc repro >{logs}/again.out 2>{logs}/again.err; echo $? >{logs}/again.rc
    """
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script],
                            env=project.env, capture_output=True, text=True, timeout=600)
    if result.returncode == 77:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    return {path.name: path.read_text() for path in logs.iterdir()}


@pytest.mark.parametrize("stage, free", [
    # Room for DVC's lock file (two tmpfs pages: a stage's lock lists the paths of every
    # upstream stage's deps) and what the stage writes first, not for the rest:
    ("extract", 16384),  # its features do not fit: it fails before running the backbone
    ("train_head", 8192),  # the disk is full as it saves (dvclive, the model)
])
def test_a_full_disk_is_one_line_leaves_no_output_and_the_next_repro_runs_again(
        project, tmp_path, stage, free):
    project.set_params(**{"backbone.name": "mobilenet", "backbone.alpha": 0.25})
    upstream = ["fetch", "preprocess", "backbone", "extract", "train_head"]
    project.repro(*upstream[:upstream.index(stage)])
    before = sorted(str(path) for path in outputs(project))

    logs = run_on_a_small_disk(project, tmp_path, f"{sys.executable} -m dvc repro {stage}", free)

    assert logs["full.rc"].strip() != "0"
    ours = [line for line in logs["full.err"].splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and "Traceback" not in logs["full.err"], logs["full.err"]
    assert ours[0].startswith("error: no space left on the device")
    assert "then run `dvc repro` again" in ours[0]
    if stage == "extract":
        assert "for data/features/chunks/rows: it needs " in ours[0]
    # Nothing of the failed stage is left, in its outputs or as temporaries beside them.
    assert sorted(logs["outputs"].split()) == sorted(["data", "models", "metrics"] + before)
    assert logs["again.rc"].strip() == "0", logs["again.err"]
    assert f"Running stage '{stage}'" in logs["again.out"]


def test_the_same_photo_in_train_and_test_is_warned_about_and_counted(project, folder_dataset):
    train, test = folder_dataset / "train", folder_dataset / "test"
    shutil.copy(train / "class_1" / "002.png", test / "class_1" / "copy.png")
    shutil.copy(train / "class_2" / "000.png", test / "class_0" / "mislabeled_copy.png")
    shutil.copy(train / "class_0" / "001.png", train / "class_0" / "again.png")
    shutil.copy(test / "class_2" / "001.png", test / "class_2" / "again.png")
    shutil.copy(test / "class_2" / "001.png", test / "class_2" / "and_again.png")

    result = project.run("python", "stages/fetch.py")

    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1, result.stderr
    assert "2 test images are the very same files as train images" in warning[0]
    assert "test/class_1/copy.png = train/class_1/002.png" in warning[0]
    assert "test/class_0/mislabeled_copy.png = train/class_2/000.png" in warning[0]
    metrics = project.metrics("fetch")
    assert metrics["duplicates_across_splits"] == 2
    assert metrics["duplicates_within_split"] == {"train": 1, "test": 2}
