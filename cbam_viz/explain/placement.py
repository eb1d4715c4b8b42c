"""Moving a model's maps onto another crop of the same image (a set whose models crop differently).

A map of shape (h, w) covers its model's crop box (:func:`cbam_viz.models.transforms.crop_box`) as a
grid of h x w cells. Placing it onto another box samples it at the centres of that box's cells,
bilinearly between the map's cell centres (the interpolation the overlays use) and clamped at its
edges; cells whose centre lies outside the map's box are 0: the model did not see that part.
"""
from __future__ import annotations

import numpy as np

from ..models.transforms import Box


def _weights(centres: np.ndarray, start: float, end: float, n: int) -> np.ndarray:
    """(len(centres), n) linear-interpolation weights of image coordinates ``centres`` on ``n`` cells
    spanning [start, end]; all-zero rows outside [start, end]."""
    index = np.clip((centres - start) / (end - start) * n - 0.5, 0, n - 1)
    low = np.floor(index).astype(int)
    high = np.minimum(low + 1, n - 1)
    frac = index - low
    weights = np.zeros((len(centres), n))
    rows = np.arange(len(centres))
    np.add.at(weights, (rows, low), 1 - frac)
    np.add.at(weights, (rows, high), frac)
    weights[(centres < start) | (centres > end)] = 0
    return weights


def place_map(values: np.ndarray, box: Box, onto: Box, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``values`` (a 2-D map over ``box``) resampled onto ``onto`` at ``shape`` (default: the map's own);
    both boxes in the same image's pixel coordinates. Float32; the map itself when nothing moves."""
    h, w = shape or values.shape
    if tuple(box) == tuple(onto) and (h, w) == values.shape:
        return values
    xs = onto[0] + (np.arange(w) + 0.5) * (onto[2] - onto[0]) / w
    ys = onto[1] + (np.arange(h) + 0.5) * (onto[3] - onto[1]) / h
    wx = _weights(xs, box[0], box[2], values.shape[1])
    wy = _weights(ys, box[1], box[3], values.shape[0])
    return (wy @ values.astype(np.float64) @ wx.T).astype(np.float32)
