"""The `folder` source: a directory or an archive of train/<class>/ and test/<class>/ images,
and a one-line error for each way such a folder can be wrong."""
import hashlib
import shutil
import struct
import tarfile
import tempfile
import zipfile
import zlib

import numpy as np
import pytest
from conftest import SHARED_CIFAR_JPG, make_folder_dataset, needs_shared, read_raw
from PIL import Image

from keras_bottleneck import storage
from keras_bottleneck.datasets import RawSplit
from keras_bottleneck.errors import PipelineError
from keras_bottleneck.folder import fetch_folder, find_root, list_split, read_tree
from keras_bottleneck.images import load_rgb
from keras_bottleneck.testing.stores import listing

# make_folder_dataset's class_0/1/2 are red/green/blue; renamed so that the order they were
# made in is not the order of their names.
NAMES = {"class_0": "zebra", "class_1": "ant", "class_2": "mole"}
DOMINANT_CHANNEL = {"ant": 1, "mole": 2, "zebra": 0}
SORTED = ["ant", "mole", "zebra"]


@pytest.fixture
def dataset(tmp_path):
    root = make_folder_dataset(tmp_path / "images", classes=3, train=3, test=2)
    for split in ("train", "test"):
        for old, new in NAMES.items():
            (root / split / old).rename(root / split / new)
    return root


def read_folder(path):
    """({split: decoded images, labels and names}, classes) as fetch stores them."""
    with tempfile.TemporaryDirectory() as raw:
        counts, classes, checked = fetch_folder(path, raw)
        splits = {split: read_raw(raw, split) for split in ("train", "test")}
    assert counts == {split: len(splits[split].images) for split in splits}
    assert checked == sum(counts.values())  # nothing was known: every image was checked
    return splits, classes


def archive(source, target, top=None):
    """Pack the folder `source` as `target` (.tar, .tar.gz or .zip), under folder `top` if given."""
    files = sorted(p for p in source.rglob("*") if p.is_file())
    name = str(target)

    def member(path):
        relative = path.relative_to(source).as_posix()
        return f"{top}/{relative}" if top else relative

    if name.endswith(".zip"):
        with zipfile.ZipFile(target, "w") as packed:
            for path in files:
                packed.write(path, member(path))
    else:
        with tarfile.open(target, "w:gz" if name.endswith(".gz") else "w") as packed:
            for path in files:
                packed.add(path, member(path))
    return target


def one_line_error(path, match):
    with pytest.raises(PipelineError, match=match) as caught:
        read_folder(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_directory_classes_sorted_by_name_with_matching_labels(dataset):
    splits, classes = read_folder(dataset)

    assert classes == SORTED
    for split, per_class in (("train", 3), ("test", 2)):
        labels = splits[split].labels
        np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], per_class))
        for image, label in zip(splits[split].images, labels):
            assert image.shape == (40, 48, 3) and image.dtype == np.uint8
            assert image.mean(axis=(0, 1)).argmax() == DOMINANT_CHANNEL[classes[label]]
    # Files of a class come in name order: the first train image of "ant" is class_1/000.png.
    first = np.asarray(Image.open(dataset / "train" / "ant" / "000.png"))
    np.testing.assert_array_equal(splits["train"].images[0], first)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".zip"])
@pytest.mark.parametrize("top", [None, "my-images"])
def test_archives_read_like_the_directory(dataset, tmp_path, suffix, top):
    expected_splits, expected_classes = read_folder(dataset)
    packed = archive(dataset, tmp_path / f"images{suffix}", top)

    splits, classes = read_folder(packed)

    assert classes == expected_classes
    for split, expected in expected_splits.items():
        np.testing.assert_array_equal(splits[split].labels, expected.labels)
        assert len(splits[split].images) == len(expected.images)
        for image, expected_image in zip(splits[split].images, expected.images):
            np.testing.assert_array_equal(image, expected_image)


def test_non_image_and_hidden_files_are_ignored(dataset):
    ant = dataset / "train" / "ant"
    (ant / "README.txt").write_text("where these came from")
    (ant / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (ant / "._000.png").write_bytes(b"macOS resource fork, not a PNG")  # hidden, image suffix
    (dataset / "train" / ".DS_Store").write_bytes(b"\x00")
    (dataset / "train" / ".thumbnails").mkdir()
    shutil.copy(ant / "000.png", dataset / "train" / ".thumbnails" / "000.png")
    (dataset / "README.txt").write_text("train/ and test/ below")

    splits, classes = read_folder(dataset)

    assert classes == SORTED
    assert len(splits["train"].images) == 9 and len(splits["test"].images) == 6


def test_zip_made_on_macos(dataset, tmp_path):
    packed = archive(dataset, tmp_path / "images.zip", top="images")
    with zipfile.ZipFile(packed, "a") as zipped:  # what macOS's "Compress" adds
        zipped.writestr("__MACOSX/images/train/ant/._000.png", b"resource fork")
        zipped.writestr("images/.DS_Store", b"\x00\x00\x00\x01Bud1")
    splits, classes = read_folder(packed)
    assert classes == SORTED and len(splits["train"].images) == 9


def test_missing_path(tmp_path):
    missing = tmp_path / "not-there"
    message = one_line_error(missing, "does not exist")
    assert str(missing) in message and "data.path" in message


def test_no_train_or_test_folder(dataset):
    shutil.rmtree(dataset / "test")
    message = one_line_error(dataset, "no train/ and test/")
    assert str(dataset) in message and "test/<class>" in message


def test_classes_differ_between_splits(dataset):
    shutil.rmtree(dataset / "test" / "mole")
    message = one_line_error(dataset, "same class folders")
    assert "only in train: ['mole']" in message and "only in test: []" in message


@pytest.mark.parametrize("leave", [None, "notes.txt"])
def test_empty_class_folder(dataset, leave):
    empty = dataset / "test" / "ant"
    for path in empty.iterdir():
        path.unlink()
    if leave:
        (empty / leave).write_text("not an image")
    message = one_line_error(dataset, "holds no images")
    assert str(empty) in message


def test_empty_class_folder_in_an_archive(dataset, tmp_path):
    for path in (dataset / "train" / "mole").iterdir():
        path.unlink()
    packed = tmp_path / "images.tar"
    with tarfile.open(packed, "w") as tar:
        tar.add(dataset, "images")  # folders are members too, the empty one included
    message = one_line_error(packed, "holds no images")
    assert f"{packed}/images/train/mole" in message


def test_symlinked_class_folders_are_followed(dataset, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (dataset / "train" / "ant").rename(elsewhere)
    (dataset / "train" / "ant").symlink_to(elsewhere)
    splits, classes = read_folder(dataset)
    assert classes == SORTED and len(splits["train"].images) == 9


@pytest.mark.parametrize("packed", [None, ".zip"])
def test_heic_and_avif_photos_read_like_any_image(dataset, tmp_path, packed):
    """A class folder of phone photos only, another mixing them with PNGs."""
    mole = dataset / "train" / "mole"
    for i, path in enumerate(sorted(mole.iterdir())):
        Image.open(path).save(path.with_suffix(".heic"), quality=95)
        path.unlink()
    Image.open(dataset / "train" / "ant" / "000.png").save(dataset / "train" / "ant" / "x.avif")
    source = archive(dataset, tmp_path / "photos.zip") if packed else dataset

    splits, _ = read_folder(source)

    train = splits["train"]
    assert [name for name in train.names if name.endswith((".heic", ".avif"))] == [
        "train/ant/x.avif", "train/mole/000.heic", "train/mole/001.heic", "train/mole/002.heic"]
    for name, image in zip(train.names, train.images):
        label = name.split("/")[1]  # each photo still shows its class's colour
        assert image.mean(axis=(0, 1)).argmax() == DOMINANT_CHANNEL[label], name


def test_zip_with_backslashes_in_member_names_reads_as_folders(dataset, tmp_path):
    packed = tmp_path / "windows.zip"
    with zipfile.ZipFile(packed, "w") as archive_file:
        for path in sorted(p for p in dataset.rglob("*") if p.is_file()):
            archive_file.write(path, "\\".join(("photos",) + path.relative_to(dataset).parts))
    assert "photos\\train\\ant\\000.png" in zipfile.ZipFile(packed).namelist()

    splits, classes = read_folder(packed)
    plain, _ = read_folder(dataset)

    assert classes == SORTED
    assert splits["train"].names == ["photos/" + name for name in plain["train"].names]
    for ours, theirs in zip(splits["train"].images, plain["train"].images):
        np.testing.assert_array_equal(ours, theirs)


def test_a_symlink_loop_and_a_folder_linked_twice_are_listed_once(dataset, capsys):
    ant = dataset / "train" / "ant"
    (ant / "loop").symlink_to(dataset / "train")  # a loop: ant/loop/ant/loop/...
    (dataset / "train" / "ant_again").symlink_to(ant)

    tree = read_tree(dataset)

    listed = sorted(str(path) for path in tree.files)
    assert len(listed) == 3 * 3 + 3 * 2, listed  # each image once
    warning = capsys.readouterr().err
    assert "skipped 2 links to folders already listed" in warning
    assert "train/ant/loop" in warning and "train/ant_again" in warning


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garble(path):
    path.write_bytes(b"this is not a JPEG at all" * 10)


@pytest.mark.parametrize("damage", [truncate, garble])
def test_unreadable_jpeg_is_named(dataset, damage):
    bad = dataset / "train" / "mole" / "001.jpg"
    Image.open(dataset / "train" / "mole" / "001.png").save(bad, quality=95)
    damage(bad)
    message = one_line_error(dataset, "not a readable image")
    assert str(bad) in message


def test_unreadable_jpeg_in_an_archive_is_named_inside_the_archive(dataset, tmp_path):
    bad = dataset / "test" / "zebra" / "bad.jpg"
    Image.open(dataset / "test" / "zebra" / "000.png").save(bad)
    truncate(bad)
    packed = archive(dataset, tmp_path / "images.tar.gz", top="images")
    message = one_line_error(packed, "not a readable image")
    assert f"{packed}/images/test/zebra/bad.jpg: not a readable image" in message


def test_tar_gz_that_is_not_an_archive(tmp_path):
    fake = tmp_path / "images.tar.gz"
    fake.write_text("<html>404 Not Found</html>")
    message = one_line_error(fake, "not a readable .tar, .tar.gz or .zip")
    assert str(fake) in message


@needs_shared(SHARED_CIFAR_JPG)
def test_shared_cifar10_jpg_archive_lists_and_decodes():
    # Reading all 12k images takes several seconds; listing them all and decoding a few shows
    # the layout (one top-level folder) and the JPEGs work.
    tree = read_tree(SHARED_CIFAR_JPG)
    root = find_root(tree)
    assert str(root) == "cifar10-jpg"
    listing = {split: list_split(tree, root, split) for split in ("train", "test")}
    assert list(listing["train"]) == list(listing["test"]) == sorted(listing["train"])
    assert len(listing["train"]) == 10 and "airplane" in listing["train"]
    assert all(len(files) == 1000 for files in listing["train"].values())
    assert all(len(files) == 200 for files in listing["test"].values())
    for files in listing["test"].values():
        ((_, data),) = tree.read([files[0]])
        image = load_rgb(data)
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        assert image.std() > 0


def test_names_and_order_do_not_depend_on_the_archives_member_order(dataset, tmp_path):
    expected, _ = read_folder(dataset)
    packed = tmp_path / "reversed.tar"
    with tarfile.open(packed, "w") as tar:  # members in reverse name order
        for path in sorted((p for p in dataset.rglob("*") if p.is_file()), reverse=True):
            tar.add(path, path.relative_to(dataset).as_posix())
    splits, _ = read_folder(packed)
    for split in ("train", "test"):
        assert splits[split].names == expected[split].names
        assert splits[split].names[0] == f"{split}/ant/000.png"
        for image, expected_image in zip(splits[split].images, expected[split].images):
            np.testing.assert_array_equal(image, expected_image)


def test_skipped_files_are_named_in_warnings(dataset, capsys):
    ant = dataset / "train" / "ant"
    (ant / "notes.txt").write_text("where these came from")
    (ant / "photo.jxl").write_bytes(b"\xff\x0a" + bytes(100))
    (ant / "more").mkdir()
    shutil.copy(ant / "000.png", ant / "more" / "deep.png")
    shutil.copy(ant / "000.png", dataset / "train" / "loose.png")
    (dataset / "val" / "ant").mkdir(parents=True)
    shutil.copy(ant / "000.png", dataset / "val" / "ant" / "000.png")
    (dataset / ".DS_Store").write_bytes(b"\x00")

    splits, _ = read_folder(dataset)

    assert len(splits["train"].images) == 9  # only train/<class>/<image>
    warnings = capsys.readouterr().err.splitlines()
    assert all(line.startswith(f"warning: {dataset}: skipped ") for line in warnings)
    text = "\n".join(warnings)
    for name in ("train/ant/notes.txt", "train/ant/photo.jxl", "train/ant/more/deep.png",
                 "train/loose.png", "val/ant/000.png", ".DS_Store"):
        assert name in text, name
    assert len(warnings) == 5  # one line per reason
    not_images = next(line for line in warnings if "not images" in line)
    assert "skipped 1 files" in not_images and "notes.txt" in not_images
    jpeg_xl = next(line for line in warnings if "photo.jxl" in line)
    assert "1 JPEG XL photos, which Pillow cannot read (convert them to JPEG" in jpeg_xl


def test_a_long_list_of_skipped_files_is_cut_short(dataset, capsys):
    for i in range(12):
        (dataset / "test" / "ant" / f"notes{i:02d}.txt").write_text("x")
    read_folder(dataset)
    (warning,) = capsys.readouterr().err.splitlines()
    assert "skipped 12 files" in warning and "notes04.txt" in warning
    assert "notes05.txt" not in warning and warning.endswith("and 7 more")


def test_a_single_class_is_refused(tmp_path):
    root = make_folder_dataset(tmp_path / "images", classes=1)
    message = one_line_error(root, "a classifier needs two or more")
    assert str(root / "train") in message and "class_0" in message


def png_header(width, height):
    """The start of a PNG that announces `width` x `height` pixels."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def test_any_decoder_exception_is_one_line_naming_the_file(dataset):
    # Pillow refuses it with DecompressionBombError, which is not an OSError.
    bomb = dataset / "train" / "ant" / "huge.png"
    bomb.write_bytes(png_header(30000, 30000))
    message = one_line_error(dataset, "not a readable image")
    assert f"{bomb}: not a readable image" in message and "decompression bomb" in message


def test_every_unreadable_image_is_named_in_the_one_line(dataset, tmp_path):
    bad = []
    for split, name in (("train", "ant"), ("train", "zebra"), ("test", "mole")):
        path = dataset / split / name / "bad.jpg"
        path.write_bytes(b"not a JPEG")
        bad.append(path)
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(PipelineError) as caught:
        fetch_folder(dataset, raw)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{bad[0]}: not a readable image")
    assert all(str(path) in message for path in bad)


def test_images_known_to_decode_are_not_checked_again(dataset, tmp_path):
    """Images an earlier raw dataset holds are neither checked again nor stored again: its
    chunk comes into the new raw dataset as the very same file."""
    subset, first, again = tmp_path / "subset", tmp_path / "first", tmp_path / "again"
    shutil.copytree(dataset, subset)
    dropped = sorted((subset / "train").rglob("*.*"))[:2]
    for path in dropped:
        path.unlink()
    fetch_folder(subset, first)
    train = RawSplit(first, "train")
    assert [hashlib.sha256(train.read(i)).digest() for i in range(len(train))] == \
        [key.tobytes() for key in train.keys]

    counts, _, checked = fetch_folder(dataset, again, storage.Earlier([listing(first)]))

    assert checked == 2 and counts["train"] == len(train) + 2
    earlier_chunks = {name for name in listing(first) if name.startswith("chunks/")}
    assert earlier_chunks <= set(listing(again))
    for name in earlier_chunks:
        assert (again / name).read_bytes() == (first / name).read_bytes()
    scratch = tmp_path / "scratch"
    fetch_folder(dataset, scratch)
    assert [RawSplit(again, "train").read(i) for i in range(counts["train"])] == \
        [RawSplit(scratch, "train").read(i) for i in range(counts["train"])]