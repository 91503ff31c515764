"""Bad input through the real stage scripts: exit code 1, one `error:` line naming the problem as
the last line of stderr, no traceback, and no new file in data/, models/ or metrics/."""
import pytest
from PIL import Image

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
    assert (project.root / "data" / "raw" / "train_images.bin").exists()

    project.set_params(**{"prepare.train_count": 13})  # the tiny dataset has 12
    last_line = run_failing(project, "preprocess")

    assert "prepare.train_count 13 is more than the 12 train images" in last_line
    assert not (project.root / "data" / "prepared").exists()
    assert not (project.root / "metrics" / "first_images.png").exists()
