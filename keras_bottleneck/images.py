"""Decode any image a user may have into RGB uint8, and resize it."""
import io
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import PipelineError

# HEIC/HEIF (the iPhone camera's default) through the pillow-heif plugin; AVIF is Pillow's own.
pillow_heif.register_heif_opener()
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic",
                  ".heif", ".avif"}
# Photos in formats Pillow cannot read: named as what they are, with the way out, instead of
# being lumped with "files that are not images".
UNREADABLE_FORMATS = {
    ".jxl": "JPEG XL", ".dng": "camera RAW", ".cr2": "camera RAW", ".cr3": "camera RAW",
    ".nef": "camera RAW", ".arw": "camera RAW", ".orf": "camera RAW", ".rw2": "camera RAW",
    ".raf": "camera RAW", ".svg": "SVG (vector)"}
UNREADABLE_FIX = "convert them to JPEG or PNG (e.g. with ImageMagick: magick in.jxl out.jpg)"
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
# A JPEG is decoded at 1/2, 1/4 or 1/8 scale (draft mode) only while that leaves at least this
# many times the target side: the bicubic resize then still has enough pixels to average, and
# the result matches a full decode to within a grey level (benchmarks/scale.py measures it).
DRAFT_MARGIN = 2


def is_image_file(path):
    """Image files by suffix; hidden files (.DS_Store, ._x.jpg from macOS) never count."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def unreadable_reason(path):
    """Why a photo Pillow cannot read is skipped ("JPEG XL photos, ..."), or None."""
    name = None if path.name.startswith(".") else UNREADABLE_FORMATS.get(path.suffix.lower())
    return name and f"{name} photos, which Pillow cannot read ({UNREADABLE_FIX})"


def _first_bytes(source):
    if hasattr(source, "seek"):
        source.seek(0)
        return source.read(16)
    with open(source, "rb") as file:
        return file.read(16)


def _sniffed_format(data):
    """What a file Pillow does not identify seems to be, from its first bytes, or None."""
    if data.startswith(b"\xff\x0a") or data[4:12] == b"JXL \r\n\x87\n":
        return "JPEG XL"
    if data[4:8] == b"ftyp":
        return f"an ISO media file of brand {data[8:12].decode('latin-1').strip()!r}"
    return None


def _to_rgb(image):
    """EXIF rotation applied, 16-bit scaled to 8-bit, transparency composited on white, any
    other mode (L, P, CMYK...) converted."""
    image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT_MODES:
        # convert("L") would clip 16-bit values at 255 instead of scaling them.
        image = Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8))
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return image.convert("RGB")


def open_rgb(source, name=None, draft_side=None):
    """The image in `source` (a path, bytes or a binary file object; `name` is how errors call
    it) as an RGB PIL image. With `draft_side`, a JPEG may be decoded at a reduced scale that
    keeps both sides at least `draft_side` (libjpeg's DCT scaling: several times faster on big
    photos). Whatever a decoder raises becomes one PipelineError naming the file."""
    shown = name or (source if isinstance(source, (str, Path)) else "an image")
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as image:
            if draft_side:
                image.draft(None, (draft_side, draft_side))
            return _to_rgb(image)
    except UnidentifiedImageError:
        sniffed = _sniffed_format(_first_bytes(source))
        if sniffed:
            raise PipelineError(f"{shown}: {sniffed}, a format Pillow cannot read: "
                                f"{UNREADABLE_FIX}") from None
        reason = "not a format Pillow knows"
    except MemoryError:
        raise  # the machine's limit, not the file's fault
    except Exception as error:  # noqa: BLE001 - decoders raise anything on bad data
        reason = " ".join(str(error).split()) or type(error).__name__
    raise PipelineError(f"{shown}: not a readable image ({reason}); "
                        "replace or delete the file")


def load_rgb(source, name=None):
    """The image as an HxWx3 uint8 array, decoded at full size (see open_rgb)."""
    return np.asarray(open_rgb(source, name))


def resize(image, img_size):
    """Resize an HxWx3 uint8 array to img_size x img_size with PIL's bicubic filter."""
    if image.shape[:2] == (img_size, img_size):
        return image
    return np.asarray(Image.fromarray(image).resize((img_size, img_size), Image.BICUBIC))


def decode_resized(source, img_size, name=None):
    """The image decoded (at a reduced JPEG scale where that keeps quality) and resized to an
    img_size x img_size x 3 uint8 array: what preprocess stores and predict sees."""
    return resize(np.asarray(open_rgb(source, name, DRAFT_MARGIN * img_size)), img_size)


def check_decodes(data, name):
    """None if `data` decodes as an image, else the one-line reason. Decoding at the smallest
    JPEG scale still reads every byte, so truncation and corruption are caught quickly."""
    try:
        open_rgb(data, name, draft_side=1)
    except PipelineError as error:
        return str(error)
    return None
