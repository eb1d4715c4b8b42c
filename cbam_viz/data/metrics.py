"""Localization metrics for saliency maps, with bootstrap CIs and paired tests.

Conventions: ``cam`` is an HxW float array (non-negative, typically in [0, 1]);
``mask`` is an HxW bool array; ``box`` is ``(x0, y0, x1, y1)`` with x0/y0
inclusive and x1/y1 exclusive, i.e. the region ``cam[y0:y1, x0:x1]`` -- the
same convention as :class:`cbam_viz.data.synth.Sample`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

ArrayLike = np.ndarray | Sequence[float] | Sequence[bool]


def _check_pair(cam: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam, mask = np.asarray(cam, dtype=np.float64), np.asarray(mask, dtype=bool)
    if cam.ndim != 2 or cam.shape != mask.shape:
        raise ValueError(f"cam {cam.shape} and mask {mask.shape} must be equal 2-D shapes")
    return cam, mask


def pointing_game(cam: np.ndarray, mask: np.ndarray, tolerance: float = 15,
                  reference_size: int = 224) -> bool:
    """Hit when the CAM maximum lies within ``tolerance`` px (Euclidean) of the mask.

    The tolerance is given for a ``reference_size`` image and scaled to this one:
    ``tolerance * max(H, W) / reference_size``. Ties go to the first maximum in
    row-major order (``np.argmax``).
    """
    cam, mask = _check_pair(cam, mask)
    if not mask.any():
        raise ValueError("mask is empty")
    tol = tolerance * max(cam.shape) / reference_size
    py, px = np.unravel_index(int(np.argmax(cam)), cam.shape)
    ys, xs = np.nonzero(mask)
    return bool(np.min((ys - py) ** 2 + (xs - px) ** 2) <= tol * tol)


def energy_pointing_game(cam: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of the CAM's total energy inside ``box`` (Score-CAM); 0 when the CAM sums to 0."""
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2 or (cam < 0).any():
        raise ValueError("cam must be a non-negative 2-D array")
    total = cam.sum()
    if total == 0:
        return 0.0
    x0, y0, x1, y1 = box
    return float(cam[max(y0, 0):y1, max(x0, 0):x1].sum() / total)


def mask_iou(cam: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """IoU between ``cam >= threshold`` and ``mask``; 0 when both are empty."""
    cam, mask = _check_pair(cam, mask)
    pred = cam >= threshold
    union = np.logical_or(pred, mask).sum()
    return float(np.logical_and(pred, mask).sum() / union) if union else 0.0


def bootstrap_ci(values: ArrayLike, n_boot: int = 2000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean and its percentile-bootstrap ``1 - alpha`` interval."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("values is empty")
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // x.size)  # bound memory at ~32 MB of indices
    means = np.concatenate([
        x[rng.integers(0, x.size, (min(chunk, n_boot - start), x.size))].mean(axis=1)
        for start in range(0, n_boot, chunk)
    ])
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


def paired_test(a: ArrayLike, b: ArrayLike, n_boot: int = 2000, alpha: float = 0.05,
                seed: int = 0) -> dict[str, float | int | str]:
    """Compare paired samples ``a`` and ``b``.

    Bool inputs (e.g. pointing-game hits): exact McNemar test, a two-sided
    binomial test on the discordant pairs. Otherwise: Wilcoxon signed-rank test
    (zero differences dropped). p is 1.0 when no pair differs. Returns ``test``,
    ``n``, ``mean_diff`` (mean of ``a - b``), ``ci_low``, ``ci_high`` and ``p_value``.
    """
    a_arr, b_arr = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a_arr.shape != b_arr.shape or a_arr.size == 0:
        raise ValueError("a and b must be non-empty and of equal length")
    diff = a_arr.astype(np.float64) - b_arr.astype(np.float64)
    if a_arr.dtype == bool and b_arr.dtype == bool:
        test, p = "mcnemar_exact", _mcnemar_p(a_arr, b_arr)
    else:
        test = "wilcoxon"
        p = 1.0 if not diff.any() else float(stats.wilcoxon(a_arr, b_arr).pvalue)
    mean, lo, hi = bootstrap_ci(diff, n_boot=n_boot, alpha=alpha, seed=seed)
    return {"test": test, "n": int(diff.size), "mean_diff": mean,
            "ci_low": lo, "ci_high": hi, "p_value": p}


def _mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
