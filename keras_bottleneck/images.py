"""Decode any image a user may have into RGB uint8, and resize it."""
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import PipelineError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def is_image_file(path):
    """Image files by suffix; hidden files (.DS_Store, ._x.jpg from macOS) never count."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def load_rgb(source, name=None):
    """The image in `source` (a path or a binary file object; `name` is how errors call it) as
    an HxWx3 uint8 array: EXIF rotation applied, 16-bit scaled to 8-bit, transparency
    composited on white, any other mode (L, P, CMYK...) converted."""
    try:
        with Image.open(source) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in _SIXTEEN_BIT_MODES:
                # convert("L") would clip 16-bit values at 255 instead of scaling them.
                image = Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8))
            if image.mode in _ALPHA_MODES or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = "not a format Pillow knows" if isinstance(error, UnidentifiedImageError) else error
        raise PipelineError(f"{name or source}: not a readable image ({reason}); "
                            "replace or delete the file") from None


def resize(image, img_size):
    """Resize an HxWx3 uint8 array to img_size x img_size with PIL's bicubic filter."""
    if image.shape[:2] == (img_size, img_size):
        return image
    return np.asarray(Image.fromarray(image).resize((img_size, img_size), Image.BICUBIC))
