"""Image input: safe decoding of user files, and the one preprocessing shared by training and the app.

Fashion-MNIST is a light garment on a black background at 28x28. A user's photo is usually the
opposite (a dark garment on a light background), large, and off-centre. `prepare_image` brings
both to the same picture: greyscale, object light on black, cropped to the object with a margin,
centred, passed through a 28x28 bottleneck (so photos get Fashion-MNIST's level of detail) and
scaled to the encoder's 224x224."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError
from .files import file_bytes

MAX_PIXELS = 40_000_000  # a 40-megapixel limit: larger files are refused before their pixels are decoded
MODEL_SIZE = 224
BOTTLENECK = 28  # Fashion-MNIST's resolution
MARGIN = 1 / 14  # of the object's longer side, each way: Fashion-MNIST's 2 px in 28
BORDER = 0.04  # the outer 4% of each side tells the background's brightness
MIN_CONTRAST = 12  # grey levels an object must stand out from its background
ACCEPTED = "PNG, JPEG, GIF, WebP, BMP or TIFF"


def load_image(source) -> Image.Image:
    """A PIL image from a path, bytes, a PIL image or an array; any problem is an InputError saying what is wrong."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise InputError(f"an image array must be (height, width) or (height, width, channels), got {source.shape}")
        array = source if source.dtype == np.uint8 else np.clip(source, 0, 255).astype(np.uint8)
        return Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array)
    data = file_bytes(source, "image")
    if b"<svg" in data[:1024].lower():
        raise InputError(f"SVG (vector) images are not supported: export it as {ACCEPTED}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputError(f"the image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); "
                                 f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels")
            image.seek(0)  # animations: the first frame
            image.load()
    except UnidentifiedImageError:
        raise InputError(f"this file is not an image that can be read; send a {ACCEPTED} file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"the image is too large to decode safely (over {MAX_PIXELS / 1e6:.0f} megapixels)") from None
    except (OSError, SyntaxError, EOFError) as error:
        raise InputError(f"the image file is truncated or corrupt ({error})") from None
    return image


def to_grey(image: Image.Image) -> np.ndarray:
    """(height, width) float grey levels 0..255, respecting EXIF rotation, transparency and bit depth."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image, dtype=np.float64) / 257.0  # 16-bit: 65535 -> 255
    if image.mode in ("I", "F"):  # 32-bit int or float: stretch its own range
        values = np.asarray(image, dtype=np.float64)
        low, high = values.min(), values.max()
        return (values - low) / max(high - low, 1e-12) * 255.0
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white: a cut-out on a light background, like a product photo.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB").convert("L"), dtype=np.float64)


@dataclass(frozen=True)
class PreparedImage:
    """A picture as an image encoder sees it (its `prepare`'s array), which its forward takes as it is."""

    pixels: np.ndarray  # (S, S) or (S, S, 3) uint8


def prepare_image(source) -> np.ndarray:
    """Any image -> (224, 224) uint8: the object light on black, cropped, centred. What the model sees."""
    grey = to_grey(load_image(source))
    height, width = grey.shape
    band = max(1, round(BORDER * min(height, width)))
    border = np.concatenate([grey[:band].ravel(), grey[-band:].ravel(), grey[:, :band].ravel(), grey[:, -band:].ravel()])
    if np.median(border) > 127:  # light background: a photo, not Fashion-MNIST
        grey, border = 255.0 - grey, 255.0 - border
    foreground = np.clip(grey - np.median(border), 0, None)
    if foreground.max() < MIN_CONTRAST:
        raise InputError("nothing stands out from the background in this image: send a picture of one garment "
                         "on a plain background")
    foreground *= 255.0 / foreground.max()
    rows, cols = np.nonzero(foreground > 0.15 * 255)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = max(bottom - top, right - left)
    side += 2 * round(MARGIN * side)
    square = np.zeros((side, side))
    y, x = (side - (bottom - top)) // 2, (side - (right - left)) // 2
    square[y:y + bottom - top, x:x + right - left] = foreground[top:bottom, left:right]
    small = Image.fromarray(square.astype(np.uint8)).resize((BOTTLENECK, BOTTLENECK), Image.Resampling.BOX
                                                           if side >= BOTTLENECK else Image.Resampling.BILINEAR)
    return np.asarray(small.resize((MODEL_SIZE, MODEL_SIZE), Image.Resampling.BILINEAR))
