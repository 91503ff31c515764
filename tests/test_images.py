"""Every image mode users have becomes correct HxWx3 uint8 RGB."""
import numpy as np
import pytest
from PIL import Image

from keras_bottleneck.errors import PipelineError
from keras_bottleneck.images import (DRAFT_MARGIN, check_decodes, decode_resized, is_image_file,
                                     load_rgb, open_rgb, resize)
from keras_bottleneck.testing.synthetic import jpeg_bytes, photo

EXIF_ORIENTATION = 0x0112


def loaded(image, path, **save_options):
    image.save(path, **save_options)
    rgb = load_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    return rgb


def test_grayscale_repeats_the_value_in_each_channel(tmp_path):
    gray = np.array([[0, 60], [128, 255]], np.uint8)
    rgb = loaded(Image.fromarray(gray, "L"), tmp_path / "gray.png")
    np.testing.assert_array_equal(rgb, np.repeat(gray[:, :, None], 3, axis=2))


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 128]]], np.uint8)
    rgb = loaded(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png")
    assert rgb[0, 0].tolist() == [255, 255, 255]  # fully transparent: the white background
    assert rgb[0, 1].tolist() == [0, 0, 255]  # opaque: the color itself
    assert all(abs(int(v) - 127) <= 1 for v in rgb[0, 2])  # half-transparent black: grey


def palette_image():
    image = Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8), "P")
    image.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200])
    return image


def test_palette_png_maps_indices_to_colors(tmp_path):
    rgb = loaded(palette_image(), tmp_path / "palette.png")
    assert rgb.tolist() == [[[200, 10, 10], [10, 200, 10]], [[10, 10, 200], [200, 10, 10]]]


def test_palette_png_with_transparency_is_composited_on_white(tmp_path):
    path = tmp_path / "palette-transparent.png"
    palette_image().save(path, transparency=1)
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    rgb = load_rgb(path)
    assert rgb.tolist() == [[[200, 10, 10], [255, 255, 255]], [[10, 10, 200], [200, 10, 10]]]


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "sixteen.png"
    Image.fromarray(np.array([[0, 1000, 32768, 65535]], np.uint16)).save(path)
    assert path.read_bytes()[24] == 16  # the PNG header's bit depth: really a 16-bit file
    rgb = load_rgb(path)
    assert rgb[0, :, 0].tolist() == [0, 3, 128, 255]  # clipping would give [0, 255, 255, 255]
    assert (rgb == rgb[:, :, :1]).all()


def test_cmyk_jpeg_is_converted(tmp_path):
    cmyk = np.zeros((16, 32, 4), np.uint8)
    cmyk[:, 16:] = [0, 255, 255, 0]  # no cyan, full magenta and yellow: red
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(cmyk, "CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    rgb = load_rgb(path).astype(int)
    assert rgb.shape == (16, 32, 3)
    assert np.abs(rgb[4:12, 2:12] - [255, 255, 255]).max() <= 8  # no ink: white paper
    assert np.abs(rgb[4:12, 20:30] - [255, 0, 0]).max() <= 8


@pytest.mark.parametrize("orientation, marked_corner", [
    (6, "top right"),  # stored 90 degrees counter-clockwise: shown turned clockwise
    (8, "bottom left"),  # stored 90 degrees clockwise: shown turned counter-clockwise
])
def test_exif_orientation_is_applied(tmp_path, orientation, marked_corner):
    stored = np.full((24, 40, 3), (200, 30, 30), np.uint8)  # 40 wide, 24 high
    stored[:8, :8] = (30, 30, 200)  # mark the stored top-left corner blue
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / f"orientation-{orientation}.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    assert Image.open(path).getexif()[EXIF_ORIENTATION] == orientation

    rgb = load_rgb(path)

    assert rgb.shape == (40, 24, 3)  # width and height swap
    corners = {"top left": rgb[1:7, 1:7], "top right": rgb[1:7, -7:-1],
               "bottom left": rgb[-7:-1, 1:7], "bottom right": rgb[-7:-1, -7:-1]}
    for corner, pixels in corners.items():
        is_blue = pixels.mean(axis=(0, 1)).argmax() == 2
        assert is_blue == (corner == marked_corner), corner


@pytest.mark.parametrize("fmt, suffix", [("HEIF", "heic"), ("AVIF", "avif")])
def test_phone_photo_formats_read_with_exif_orientation_applied(tmp_path, fmt, suffix):
    stored = np.full((24, 40, 3), (200, 30, 30), np.uint8)
    stored[:8, :8] = (30, 30, 200)  # the stored top-left corner blue
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # shown rotated 90 degrees clockwise, as a phone held upright
    path = tmp_path / f"IMG_0001.{suffix}"
    Image.fromarray(stored).save(path, format=fmt, exif=exif.tobytes(), quality=95)
    assert path.read_bytes()[4:12] == (b"ftypheic" if suffix == "heic" else b"ftypavif")
    assert is_image_file(path)

    rgb = load_rgb(path)

    assert rgb.shape == (40, 24, 3)
    assert rgb[1:7, -7:-1].mean(axis=(0, 1)).argmax() == 2  # blue now top right
    assert rgb[-7:-1, 1:7].mean(axis=(0, 1)).argmax() == 0
    assert np.abs(decode_resized(path.read_bytes(), 12).astype(int)
                  - resize(rgb, 12).astype(int)).max() <= 1


def test_a_photo_format_pillow_cannot_read_is_named_with_the_fix(tmp_path):
    path = tmp_path / "photo.jpg"  # a JPEG XL codestream, whatever its name says
    path.write_bytes(b"\xff\x0a" + bytes(200))
    with pytest.raises(PipelineError, match="JPEG XL, a format Pillow cannot read: convert"):
        load_rgb(path)


def test_not_an_image_is_named(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("not really a photo")
    with pytest.raises(PipelineError, match="not a readable image") as caught:
        load_rgb(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("name, counts", [
    ("a.jpg", True), ("b.JPEG", True), ("c.png", True), ("d.webp", True), ("e.HEIC", True),
    ("f.heif", True), ("g.avif", True),
    ("README.txt", False), (".DS_Store", False), ("._a.jpg", False), ("notes", False),
])
def test_is_image_file(tmp_path, name, counts):
    assert is_image_file(tmp_path / name) == counts


def test_resize_to_a_square():
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    resized = resize(image, 16)
    assert resized.shape == (16, 16, 3) and resized.dtype == np.uint8
    flat = np.full((20, 30, 3), 77, np.uint8)
    assert (resize(flat, 50) == 77).all()


@pytest.fixture(scope="module")
def big_jpeg():
    return jpeg_bytes(photo(4000, 3000, seed=0))


@pytest.mark.parametrize("img_size", [64, 139, 224])
def test_reduced_scale_decode_matches_a_full_decode_then_resize(big_jpeg, img_size):
    reduced = open_rgb(big_jpeg, draft_side=DRAFT_MARGIN * img_size)
    assert reduced.size[0] < 4000 and min(reduced.size) >= DRAFT_MARGIN * img_size
    full = resize(load_rgb(big_jpeg), img_size).astype(int)
    fast = decode_resized(big_jpeg, img_size)
    assert fast.shape == (img_size, img_size, 3) and fast.dtype == np.uint8
    difference = np.abs(fast - full)
    assert difference.mean() < 0.5 and difference.max() <= 8  # grey levels of 255


def test_small_images_and_other_formats_decode_at_full_size(tmp_path):
    image = photo(120, 90, seed=1, noise=0)
    image.save(tmp_path / "photo.png")
    np.testing.assert_array_equal(decode_resized((tmp_path / "photo.png").read_bytes(), 64),
                                  resize(np.asarray(image), 64))
    assert open_rgb(jpeg_bytes(image), draft_side=128).size == (120, 90)  # no room to reduce


def test_check_decodes_catches_a_truncated_jpeg(big_jpeg):
    assert check_decodes(big_jpeg, "big.jpg") is None
    reason = check_decodes(big_jpeg[: len(big_jpeg) // 2], "big.jpg")
    assert reason.startswith("big.jpg: not a readable image") and "truncated" in reason
