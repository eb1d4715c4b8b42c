"""Safe image input: any upload becomes an RGB PIL image or a one-line :class:`ImageError`.

Handles decompression bombs, truncated files, tiny or elongated images (refused from the header, before any
pixel is decoded), animated images (first frame), EXIF rotation, transparency (composited on white), CMYK,
palette, grayscale and 16-bit/float images.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # larger images are refused as potential decompression bombs
MIN_SIDE = 8
MAX_ASPECT = 1000  # longer side / shorter side: beyond it a model sees a sliver or a smear (sets bound their resize)


class ImageError(ValueError):
    """An input that cannot be used as an image; the message says why."""


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float single-channel images, min-max scaled to 8-bit grayscale."""
    values = np.asarray(image, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(values)
    return Image.fromarray(scaled.round().astype(np.uint8), "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB copy of ``image``, whatever its mode."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _to_8bit(image)
    if image.mode == "P" or image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def open_image(source: str | Path | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open, validate and normalize an image from a path or bytes; raises :class:`ImageError`."""
    label = name or (Path(source).name if not isinstance(source, bytes) else "upload")
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                _check_size(label, image.width, image.height, max_pixels)
                image.seek(0)  # animated images: the first frame
                image.load()
                image = ImageOps.exif_transpose(image)
                rgb = to_rgb(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label}: image too large (refused as a possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image file (or a format Pillow cannot read)") from None
    except FileNotFoundError:
        raise ImageError(f"{label}: file not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{label}: truncated or corrupt image ({str(e).splitlines()[0][:80]})") from None
    return rgb


def _check_size(label: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse, from the header alone, images too large, too small or too elongated to explain."""
    if width * height > max_pixels:
        raise ImageError(f"{label}: {width}x{height} pixels is more than the {max_pixels:,} allowed")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{label}: {width}x{height} pixels is too small (at least {MIN_SIDE} px per side)")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError(f"{label}: {width}x{height} pixels is too elongated (at most {MAX_ASPECT}:1)")
