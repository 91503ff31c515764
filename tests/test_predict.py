"""python -m keras_bottleneck.predict: folders, archives and files in, a CSV out; bad input is one
line, and an unreadable image does not stop the others."""
import csv
import shutil
import tarfile

import pytest
from PIL import Image

from _ran_project import IMAGES, ran_project_template  # noqa: F401 - a fixture


def predict(project, *args, output):
    return project.run("python", "-m", "keras_bottleneck.predict", *args, "--output", output,
                       check=False, timeout=300)


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def one_error_line(result):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


@pytest.fixture
def test_images(ran_project_template, tmp_path):  # noqa: F811
    """A copy of the test split's image folder, to damage."""
    return shutil.copytree(ran_project_template.root / IMAGES / "test", tmp_path / "photos")


def test_archive_nested_folders_and_single_files(ran_project_template, test_images,  # noqa: F811
                                                  tmp_path):
    project = ran_project_template
    folder = predict(project, test_images, output=tmp_path / "folder.csv")
    assert folder.returncode == 0, folder.stderr
    expected = {row["file"].split("photos/")[1]: row for row in read_rows(tmp_path / "folder.csv")}
    packed = tmp_path / "photos.tar.gz"
    with tarfile.open(packed, "w:gz") as archive:
        archive.add(test_images, "photos")
    (test_images / "notes.txt").write_text("not an image")
    single = next(test_images.rglob("*.png"))

    result = predict(project, packed, single, output=tmp_path / "mixed.csv")

    assert result.returncode == 0, result.stderr
    rows = read_rows(tmp_path / "mixed.csv")
    assert len(rows) == len(expected) + 1
    for row in rows[:-1]:
        assert row["file"].startswith(f"{packed}/photos/")
        same = expected[row["file"].split("photos/")[1]]
        assert (row["predicted"], row["probability"]) == (same["predicted"], same["probability"])
    assert rows[-1]["file"] == str(single)
    top = rows[0]["top_3"].split(";")
    assert len(top) == 3 and top[0].startswith(rows[0]["predicted"] + ":")

    skipped = predict(project, test_images, output=tmp_path / "again.csv")
    assert "warning: skipped 1 files that are not images" in skipped.stderr
    assert str(test_images / "notes.txt") in skipped.stderr


def test_heic_photos_and_a_symlink_loop(ran_project_template, test_images,  # noqa: F811
                                       tmp_path):
    project = ran_project_template
    png = next(test_images.rglob("*.png"))
    Image.open(png).save(png.with_suffix(".heic"), quality=95)
    (png.parent / "loop").symlink_to(test_images)
    (test_images / "copy.jxl").write_bytes(b"\xff\x0a" + bytes(100))
    expected = len(list(test_images.rglob("*.png"))) + 1

    result = predict(project, test_images, output=tmp_path / "out.csv")

    assert result.returncode == 0, result.stderr
    files = [row["file"] for row in read_rows(tmp_path / "out.csv")]
    assert len(files) == len(set(files)) == expected  # every image once, the loop not walked
    assert str(png.with_suffix(".heic")) in files
    assert "skipped 1 links to folders already listed" in result.stderr
    assert "skipped 1 JPEG XL photos, which Pillow cannot read" in result.stderr


def test_a_corrupt_image_is_named_and_the_others_still_predicted(ran_project_template,  # noqa: F811
                                                                 test_images, tmp_path):
    bad = test_images / "class_1" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    good = len(list(test_images.rglob("*.png")))

    result = predict(ran_project_template, test_images, output=tmp_path / "out.csv")

    last = one_error_line(result)
    assert f"1 of {good + 1} images could not be read" in last
    assert f"error: {bad}: not a readable image" in result.stderr
    rows = read_rows(tmp_path / "out.csv")
    assert len(rows) == good and str(bad) not in {row["file"] for row in rows}


@pytest.mark.parametrize("case", ["missing path", "empty folder", "not a model"])
def test_bad_input_is_one_line_and_writes_nothing(ran_project_template, tmp_path,  # noqa: F811
                                                  case):
    project = ran_project_template
    args, expected = {
        "missing path": ([tmp_path / "nowhere"], "nowhere does not exist"),
        "empty folder": ([tmp_path / "empty"], "no images found in"),
        "not a model": ([project.root / IMAGES / "test", "--model", tmp_path / "model.keras"],
                        "is not a Keras model"),
    }[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.keras").write_text("a text file")

    result = predict(project, *args, output=tmp_path / "out.csv")

    assert expected in one_error_line(result)
    assert not (tmp_path / "out.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "model.keras"]


def test_predict_classifies_files_as_the_keras_model_does(tmp_path):
    """Without a pipeline: a folder of photos in, one CSV row each, the exported model's own
    classes and probabilities, with the default engine."""
    import numpy as np
    from _saved_classifier import CLASSES, SIZE, saved_classifier
    from keras_bottleneck.predict import main
    model_path, model = saved_classifier(tmp_path / "models")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8) for _ in range(3)]
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(photos / f"{i}.png")

    main([str(photos), "--model", str(model_path), "--output", str(tmp_path / "out.csv")])

    rows = read_rows(tmp_path / "out.csv")
    expected = model.predict(np.stack(pixels), verbose=0)
    assert [row["file"] for row in rows] == [str(photos / f"{i}.png") for i in range(3)]
    assert [row["predicted"] for row in rows] == [CLASSES[i] for i in expected.argmax(1)]
    np.testing.assert_allclose([float(row["probability"]) for row in rows],
                               expected.max(axis=1), atol=1e-3)
