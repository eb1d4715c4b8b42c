"""Localization metrics for saliency maps, CAM placement, intervals and paired tests.

Conventions: ``cam`` is an HxW float array (non-negative, typically in [0, 1]);
``mask`` is an HxW bool array; ``box`` is ``(x0, y0, x1, y1)`` with x0/y0
inclusive and x1/y1 exclusive, i.e. the region ``cam[y0:y1, x0:x1]`` -- the
same convention as :class:`cbam_viz.data.synth.Sample`. Pixel ``(y, x)`` has its
centre at the coordinates ``(y, x)``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

ArrayLike = np.ndarray | Sequence[float] | Sequence[bool]
PLACEMENTS = ("half-pixel", "receptive-field")
REFERENCE_MAPS = ("uniform", "centre")


def _check_pair(cam: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam, mask = np.asarray(cam, dtype=np.float64), np.asarray(mask, dtype=bool)
    if cam.ndim != 2 or cam.shape != mask.shape:
        raise ValueError(f"cam {cam.shape} and mask {mask.shape} must be equal 2-D shapes")
    return cam, mask


# ------------------------------------------------------------------ maps

def place_cam(raw: np.ndarray, shape: tuple[int, int], placement: str = "half-pixel") -> np.ndarray:
    """Min-max normalize a feature-resolution CAM and upsample it bilinearly to ``shape``.

    With ``s = H / h`` per axis, cell ``i``'s value sits at pixel coordinate

    - ``"half-pixel"``: ``s * i + (s - 1) / 2``, the middle of the block ``[s*i, s*(i+1))``;
      this is grad-cam's ``scale_cam_image`` (``cv2.resize``, half-pixel centres), i.e. the
      map the app shows;
    - ``"receptive-field"``: ``s * i``, the centre of the cell's receptive field in a network
      whose convolutions and pools are all "same"-padded (every ResNet here: a layer4 unit
      ``i`` at stride 16 is centred on input pixel ``16 * i``).

    Between cell centres the map is linear; beyond the outermost centres it repeats the edge
    value (as ``cv2.resize`` does).
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; choose from {PLACEMENTS}")
    out = np.asarray(raw, dtype=np.float64)
    if out.ndim != 2:
        raise ValueError("raw must be a 2-D array")
    out = out - out.min()
    out = out / (1e-7 + out.max())
    for axis, (n_in, n_out) in enumerate(zip(out.shape, shape)):
        s = n_out / n_in
        x = np.arange(n_out)
        u = np.clip((x + 0.5) / s - 0.5 if placement == "half-pixel" else x / s, 0, n_in - 1)
        i0 = np.floor(u).astype(int)
        w = np.expand_dims(u - i0, 1 - axis)
        out = np.take(out, i0, axis) * (1 - w) + np.take(out, np.minimum(i0 + 1, n_in - 1), axis) * w
    return out.astype(np.float32)


def reference_map(name: str, shape: tuple[int, int]) -> np.ndarray:
    """A model-free map: ``"uniform"`` (all ones) or ``"centre"`` (1 - distance to the image
    centre / distance from the centre to a corner, a cone peaking at the centre)."""
    if name == "uniform":
        return np.ones(shape, np.float32)
    if name != "centre":
        raise ValueError(f"unknown reference map {name!r}; choose from {REFERENCE_MAPS}")
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    ys, xs = np.mgrid[:shape[0], :shape[1]]
    return (1 - np.hypot(ys - cy, xs - cx) / np.hypot(cy, cx)).astype(np.float32)


# --------------------------------------------------------------- metrics

def peak_location(cam: np.ndarray, rtol: float = 1e-6) -> tuple[float, float]:
    """Where the map points: the centroid ``(y, x)`` of its maximum plateau.

    The plateau is every pixel within ``rtol`` of the map's range below the maximum (a constant
    map is all plateau, so it points at the image centre). When the centroid falls outside the
    plateau -- farther than half a pixel diagonal from every plateau pixel, as with a
    non-convex plateau or separate equal maxima -- the plateau pixel nearest to it is used
    instead (the first in row-major order among equally near ones).
    """
    cam = np.asarray(cam, dtype=np.float64)
    top = cam.max()
    ys, xs = np.nonzero(cam >= top - rtol * (top - cam.min()))
    cy, cx = ys.mean(), xs.mean()
    d2 = (ys - cy) ** 2 + (xs - cx) ** 2
    if d2.min() <= 0.5:
        return float(cy), float(cx)
    nearest = int(np.argmin(d2))
    return float(ys[nearest]), float(xs[nearest])


def pointing_tolerance(shape: tuple[int, int], feature_shape: tuple[int, int] | None = None,
                       tolerance: float = 15, reference_size: int = 224) -> float:
    """Pointing-game tolerance in px: ``tolerance`` at ``reference_size`` scaled to ``max(H, W)``,
    and never less than half a feature cell, ``max(H / h, W / w) / 2`` for ``feature_shape (h, w)``."""
    tol = tolerance * max(shape) / reference_size
    if feature_shape is not None:
        tol = max(tol, max(shape[0] / feature_shape[0], shape[1] / feature_shape[1]) / 2)
    return float(tol)


def pointing_game(cam: np.ndarray, mask: np.ndarray, tolerance: float = 15,
                  reference_size: int = 224, feature_shape: tuple[int, int] | None = None) -> bool:
    """Hit when :func:`peak_location` lies within the :func:`pointing_tolerance` (Euclidean) of the mask."""
    cam, mask = _check_pair(cam, mask)
    if not mask.any():
        raise ValueError("mask is empty")
    tol = pointing_tolerance(cam.shape, feature_shape, tolerance, reference_size)
    py, px = peak_location(cam)
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


def concentration(cam: np.ndarray) -> float:
    """How sharp a map is: the share of its pixels at or above half its maximum (1 for a flat map).
    Says nothing about where the map points."""
    cam = np.asarray(cam, dtype=np.float64)
    return float(np.mean(cam >= cam.max() / 2))


def roc_auc(cam: np.ndarray, mask: np.ndarray) -> float:
    """ROC-AUC of the map's pixel values as a detector of the mask's pixels: the probability that a
    random object pixel outranks a random background pixel, ties counting one half (Mann-Whitney U
    from average ranks; equal to the trapezoid area under scikit-learn's ``roc_curve``). Unchanged by
    any strictly increasing transform of the map; 0.5 for a flat map."""
    cam, mask = _check_pair(cam, mask)
    n_in = int(mask.sum())
    n_out = mask.size - n_in
    if n_in == 0 or n_out == 0:
        raise ValueError("mask must have pixels both inside and outside")
    ranks = stats.rankdata(cam.ravel())
    return float((ranks[mask.ravel()].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def rank_hit(cam: np.ndarray, mask: np.ndarray) -> float:
    """Relevance rank accuracy: the share of the map's ``k`` highest pixels inside the mask, ``k`` =
    the mask's area. Pixels tied at the k-th value share the remaining places (each counts in
    proportion), so the result does not depend on an arbitrary order of equal values. Unchanged by
    any strictly increasing transform of the map."""
    cam, mask = _check_pair(cam, mask)
    k = int(mask.sum())
    if k == 0:
        raise ValueError("mask is empty")
    values, inside = cam.ravel(), mask.ravel()
    kth = np.partition(values, values.size - k)[values.size - k]  # the k-th highest value
    above, tied = values > kth, values == kth
    places = k - int(above.sum())  # places left for the pixels tied at the k-th value
    hits = np.sum(above & inside) + places * np.sum(tied & inside) / np.sum(tied)
    return float(hits / k)


def sharpen_to(cam: np.ndarray, share: float) -> tuple[np.ndarray, float]:
    """``(max * (cam / max) ** gamma, gamma)`` with the smallest ``gamma >= 1`` that brings the map's
    :func:`concentration` down to ``share`` (as close as ties allow; never below the share of pixels at
    the maximum). A power keeps the peak and the order of the pixels, so pointing, AUC and rank_hit do
    not change; energy does. A map already at or below ``share`` is returned as it is (gamma 1)."""
    cam = np.asarray(cam, dtype=np.float64)
    top = cam.max()
    if top <= 0 or concentration(cam) <= share:
        return cam, 1.0
    u = cam / top
    ascending = np.sort(u.ravel())
    levels = np.unique(ascending[ascending >= 0.5])[::-1]  # distinct values from the maximum down to half of it
    counts = u.size - np.searchsorted(ascending, levels, side="left")  # pixels at or above each level
    j = int(np.argmin(np.abs(counts - share * u.size)))  # first level whose count is nearest the target
    if j == len(levels) - 1:
        return cam, 1.0
    threshold = (levels[j] + levels[j + 1]) / 2  # between two values: rounding cannot move a pixel across
    gamma = float(np.log(0.5) / np.log(threshold))
    return top * u ** gamma, gamma


def match_concentration(cams: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every map sharpened (:func:`sharpen_to`) to the lowest concentration among them: for two
    maps, a power transform of the broader one until both have the same share above half maximum."""
    target = min(concentration(c) for c in cams)
    return [sharpen_to(c, target)[0] for c in cams]


def mask_iou(cam: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """IoU between ``cam >= threshold`` and ``mask``; 0 when both are empty."""
    cam, mask = _check_pair(cam, mask)
    pred = cam >= threshold
    union = np.logical_or(pred, mask).sum()
    return float(np.logical_and(pred, mask).sum() / union) if union else 0.0


# ------------------------------------------------------------ statistics

def bootstrap_ci(values: ArrayLike, n_boot: int = 2000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean and its percentile-bootstrap ``1 - alpha`` interval (scipy's)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("values is empty")
    ci = stats.bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=1 - alpha, method="percentile",
                         batch=max(1, 4_000_000 // x.size),  # bound memory at ~32 MB of resamples
                         random_state=np.random.default_rng(seed)).confidence_interval
    return float(x.mean()), float(ci.low), float(ci.high)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (scipy's; nonzero width even at 0% or 100%)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    ci = stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def wilson_ci(hits: ArrayLike, alpha: float = 0.05) -> tuple[float, float, float]:
    """``(proportion, lo, hi)`` with the Wilson score interval of a bool array."""
    x = np.asarray(hits, dtype=bool).ravel()
    if x.size == 0:
        raise ValueError("hits is empty")
    return (float(x.mean()), *wilson_interval(int(x.sum()), x.size, 1 - alpha))


def mean_ci(values: ArrayLike, alpha: float = 0.05) -> tuple[float, float, float]:
    """Wilson interval for a bool array (a proportion), bootstrap interval of the mean otherwise."""
    x = np.asarray(values)
    return wilson_ci(x, alpha) if x.dtype == bool else bootstrap_ci(x, alpha=alpha)


def newcombe_paired_ci(a: ArrayLike, b: ArrayLike, alpha: float = 0.05) -> tuple[float, float, float]:
    """``(p_a - p_b, lo, hi)`` for paired hit/miss data: Newcombe's (1998, method 10) square-and-add
    interval, built from the two Wilson intervals and the pairs' phi correlation with Newcombe's
    continuity correction (AD - BC above n/2 is reduced by n/2, between 0 and n/2 it counts as 0), as in
    Altman et al. (2000, "Statistics with Confidence") and Fagerland et al.'s ``contingencytables``."""
    a_arr, b_arr = np.asarray(a, dtype=bool).ravel(), np.asarray(b, dtype=bool).ravel()
    both, only_a = int(np.sum(a_arr & b_arr)), int(np.sum(a_arr & ~b_arr))
    only_b, neither = int(np.sum(~a_arr & b_arr)), int(np.sum(~a_arr & ~b_arr))
    pa, la, ua = wilson_ci(a_arr, alpha)
    pb, lb, ub = wilson_ci(b_arr, alpha)
    denom = float(both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross, half_n = both * neither - only_a * only_b, a_arr.size / 2
    corrected = cross - half_n if cross > half_n else min(cross, 0)
    phi = corrected / np.sqrt(denom) if denom > 0 else 0.0
    below = np.sqrt(max((pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2, 0.0))
    above = np.sqrt(max((ua - pa) ** 2 - 2 * phi * (ua - pa) * (pb - lb) + (pb - lb) ** 2, 0.0))
    diff = pa - pb
    return float(diff), float(diff - below), float(diff + above)


def paired_test(a: ArrayLike, b: ArrayLike, alpha: float = 0.05, n_resamples: int = 10_000,
                seed: int = 0) -> dict[str, float | int | str]:
    """Test and interval on the same statistic, the mean of ``a - b`` over paired samples.

    Bool inputs (e.g. pointing-game hits): exact McNemar test (two-sided binomial test on the
    discordant pairs) and Newcombe's interval of the difference of the two proportions.
    Otherwise: paired sign-flip permutation test of the mean difference (exact when
    ``2**n <= n_resamples``, else ``n_resamples`` seeded random flips) and the percentile
    bootstrap interval of the mean difference. p is 1.0 when no pair differs. Returns
    ``test``, ``n``, ``mean_diff``, ``ci_low``, ``ci_high`` and ``p_value``.
    """
    a_arr, b_arr = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a_arr.shape != b_arr.shape or a_arr.size == 0:
        raise ValueError("a and b must be non-empty and of equal length")
    if a_arr.dtype == bool and b_arr.dtype == bool:
        test, p = "mcnemar_exact", _mcnemar_p(a_arr, b_arr)
        mean, lo, hi = newcombe_paired_ci(a_arr, b_arr, alpha)
    else:
        diff = a_arr.astype(np.float64) - b_arr.astype(np.float64)
        test, p = "permutation", 1.0
        if diff.any():
            p = float(stats.permutation_test((diff,), np.mean, permutation_type="samples", vectorized=True,
                                             n_resamples=n_resamples, rng=seed).pvalue)
        mean, lo, hi = bootstrap_ci(diff, alpha=alpha, seed=seed)
    return {"test": test, "n": int(a_arr.size), "mean_diff": mean, "ci_low": lo, "ci_high": hi, "p_value": p}


def _mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order (family-wise error control)."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (p.size - np.arange(p.size))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted
