"""Photo-like images made on the spot, for tests and benchmarks that cannot download any."""
import io

import numpy as np
from PIL import Image


def photo(width, height, seed, noise=20):
    """A `width` x `height` RGB image: smooth colour regions (a random 40x30 image enlarged)
    plus sensor-like noise, so JPEG sizes and decode times are those of real photos."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))
    if not noise:
        return Image.fromarray(smooth)
    grain = rng.normal(0, noise, (height, width, 1)).astype(np.float32)  # one plane: quicker
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def jpeg_bytes(image, quality=90):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def reencoded(path, target, scale=1.1, quality=70):
    """A near-duplicate of the image at `path` as users make them: resized by `scale` and saved
    as a JPEG again at `quality`, in `target`."""
    image = Image.open(path).convert("RGB")
    image.resize((round(image.width * scale), round(image.height * scale)),
                 Image.BICUBIC).save(target, quality=quality)
