"""Fast numpy overlays: heat maps on images, mask outlines, thresholded regions."""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from matplotlib import colormaps


@lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    """A 256x3 uint8 lookup table for a matplotlib colormap."""
    return (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map to ``size`` = (height, width)."""
    if values.shape == size:
        return values.astype(np.float32)
    return cv2.resize(values.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def colorize(values: np.ndarray, cmap: str = "jet", vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Map a 2-D array to RGB (uint8) with a fixed value range: [vmin, vmax] -> the colormap's 256 entries."""
    scaled = np.subtract(values, vmin, dtype=np.float32)
    scaled *= np.float32(255 / max(vmax - vmin, 1e-12))
    np.clip(scaled, 0, 255, out=scaled)
    index = np.rint(scaled, out=scaled).astype(np.uint8)
    return cv2.LUT(cv2.merge([index] * 3), _lut(cmap)[:, None, :])  # one table look-up per pixel and channel


def overlay(image: np.ndarray, values: np.ndarray, alpha: float = 0.5, cmap: str = "jet",
            vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Blend a heat map (any resolution, resized bilinearly) onto an RGB uint8 image."""
    heat = colorize(resize_map(values, image.shape[:2]), cmap, vmin, vmax)
    return cv2.addWeighted(np.ascontiguousarray(image), 1 - alpha, heat, alpha, 0)  # rounded to nearest, in uint8


def threshold_regions(image: np.ndarray, values: np.ndarray, threshold: float = 0.6, dim: float = 0.25) -> np.ndarray:
    """Show only the image regions where the map is at least ``threshold``; dim the rest."""
    keep = resize_map(values, image.shape[:2]) >= threshold
    out = (image.astype(np.float32) * dim).round().astype(np.uint8)
    out[keep] = image[keep]
    return out


def outline(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Draw the boundary of a boolean mask (resized to the image) onto a copy of the image."""
    mask = resize_map(mask.astype(np.float32), image.shape[:2]) >= 0.5
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    out = image.copy()
    out[mask & ~eroded] = color
    return out
