"""The two maps of a catch trial, made from the real maps of the same image so that a participant cannot
tell a catch trial from a real one by simple image statistics, yet the right answer stays clear.

OBJECT is the real map (of the study's models) with the largest share of its energy inside the target's
box. BACKGROUND is the next model's real map (study order, cyclic), translated: the translation keeps
BACKGROUND's energy inside the box at most `ratio` of OBJECT's (the clear answer), and among those makes
the overlap of the two maps' visible regions (map >= threshold, as the study shows them) as close as
possible to the overlap of the same two maps untranslated (what a real trial of that pair shows), preferring
translations that keep its visible area between half and twice its own (not pushed out of view, not
smeared by the edge fill). When no translation keeps the answer clear, the one with the least energy in the
box is taken. Measured on the demo set the overlap stays below real trials' (a map that overlaps OBJECT as
much as real maps overlap each other is on the object too): see the README's study section. Area, contrast and
shape are those of real maps because they are real maps. Deterministic: no randomness at all.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .scheduler import BACKGROUND, OBJECT

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in map pixels


def energy_in_box(cam: np.ndarray, box: Box) -> float:
    """Sum of the map's values inside `box` (a sum, not a share: the energy a participant sees there)."""
    x0, y0, x1, y1 = box
    return float(np.asarray(cam, dtype=np.float64)[max(y0, 0):y1, max(x0, 0):x1].sum())


def region_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean regions; 0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def translate(cam: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The map moved by (dy, dx) pixels, uncovered pixels filled with the nearest edge value, then
    stretched back to the map's own value range (a part moved out of view takes its peak with it)."""
    cam = np.asarray(cam, dtype=np.float32)
    h, w = cam.shape
    padded = np.pad(cam, ((h, h), (w, w)), mode="edge")
    return _rescale(padded[h - dy:2 * h - dy, w - dx:2 * w - dx][None], cam)[0]


def _rescale(moved: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Each map of the stack `moved` (n, h, w) stretched to the value range of `like`."""
    lo = moved.min(axis=(1, 2), keepdims=True)
    span = moved.max(axis=(1, 2), keepdims=True) - lo
    unit = np.divide(moved - lo, span, out=np.zeros_like(moved), where=span > 0)
    return (like.min() + unit * (like.max() - like.min())).astype(np.float32)


def best_translation(obj: np.ndarray, other: np.ndarray, box: Box, threshold: float,
                     ratio: float = 0.5) -> tuple[int, int]:
    """The (dy, dx) for `other` described in the module docstring: searched on a grid of 4 pixels, then
    pixel by pixel around the best (ties: the shortest move)."""
    h, w = obj.shape
    other = np.asarray(other, dtype=np.float32)
    search = _Search(obj >= threshold, other, box, threshold, limit=ratio * energy_in_box(obj, box))
    coarse = search.best(range(-(h - 1), h, 4), np.arange(-(w - 1), w, 4))
    dy, dx = coarse[1]
    fine = search.best(range(max(dy - 3, -(h - 1)), min(dy + 4, h)), np.arange(max(dx - 3, -(w - 1)), min(dx + 4, w)))
    return min(coarse, fine)[1]


class _Search:
    """Scores translations of `other`: (tier, overlap miss or in-box energy, squared length); tier 0: the
    answer stays clear and the visible area within half to twice its own, 1: clear only, 2: not clear."""

    def __init__(self, seen: np.ndarray, other: np.ndarray, box: Box, threshold: float, limit: float):
        h, w = other.shape
        self.seen, self.other, self.box, self.threshold, self.limit = seen, other, box, threshold, limit
        self.target = region_overlap(seen, other >= threshold)
        self.area = int((other >= threshold).sum())
        self.padded = np.pad(other, ((h, h), (w, w)), mode="edge")

    def best(self, dys: range, dxs: np.ndarray) -> tuple[tuple[float, float, int], tuple[int, int]]:
        h, w = self.other.shape
        x0, y0, x1, y1 = self.box
        found = []
        for dy in dys:
            rows = sliding_window_view(self.padded[h - dy:2 * h - dy], w, axis=1)
            moved = _rescale(rows[:, w - dxs, :].transpose(1, 0, 2), self.other)
            visible = moved >= self.threshold
            inter = np.logical_and(visible, self.seen).sum(axis=(1, 2))
            union = np.logical_or(visible, self.seen).sum(axis=(1, 2))
            overlap = np.divide(inter, union, out=np.zeros(len(dxs)), where=union > 0)
            inside = moved[:, max(y0, 0):y1, max(x0, 0):x1].sum(axis=(1, 2), dtype=np.float64)
            area = visible.sum(axis=(1, 2))
            kept = (2 * area >= self.area) & (area <= 2 * self.area)  # not mostly pushed out or smeared
            clear = inside <= self.limit
            tier = np.where(clear, np.where(kept, 0, 1), 2)
            miss = np.where(clear, np.abs(overlap - self.target), inside)
            k = int(np.lexsort((dy * dy + dxs * dxs, miss, tier))[0])
            found.append(((int(tier[k]), float(miss[k]), int(dy * dy + dxs[k] ** 2)), (dy, int(dxs[k]))))
        return min(found)


def catch_cams(cams: Mapping[str, np.ndarray], box: Box, threshold: float) -> dict[str, np.ndarray]:
    """OBJECT and BACKGROUND maps of a catch trial from the study models' real maps `cams` (in study
    order) of an image whose target lies in `box` (map pixels); `threshold`: what the study shows."""
    roles = list(cams)
    share = [energy_in_box(cams[r], box) / max(float(np.sum(cams[r], dtype=np.float64)), 1e-12) for r in roles]
    first = int(np.argmax(share))
    obj = np.asarray(cams[roles[first]], dtype=np.float32)
    other = np.asarray(cams[roles[(first + 1) % len(roles)]], dtype=np.float32)
    dy, dx = best_translation(obj, other, box, threshold)
    return {OBJECT: obj, BACKGROUND: translate(other, dy, dx)}
