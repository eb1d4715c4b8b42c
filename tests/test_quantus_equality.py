"""The project's localization metrics against Quantus 0.6.0, the field's reference implementation:
the same maps and masks give the same numbers.

Deliberate differences, each pinned here:
- pointing game: Quantus counts a hit when any pixel at the map's maximum lies in the mask; this
  project takes the centroid of the maximum plateau and allows a tolerance (15 px at 224 px, at least
  half a feature cell). With tolerance 0 and a single maximum the two agree.
- rank hit: Quantus (RelevanceRankAccuracy) orders tied pixels arbitrarily (``np.argsort``); this project
  shares the places left among tied pixels. On maps without ties at the k-th value they agree.
- AUC and relevance mass accuracy (= energy over the region) agree on any map, ties included.
"""
import warnings

import numpy as np
import pytest

from cbam_viz.data import place_cam, pointing_game, rank_hit, roc_auc
from cbam_viz.evaluate.scoring import energy_share

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import quantus

N, SIZE = 24, 64


def _masks(rng: np.random.Generator) -> np.ndarray:
    masks = np.zeros((N, SIZE, SIZE), bool)
    ys, xs = np.mgrid[:SIZE, :SIZE]
    for i in range(N):
        cy, cx = rng.integers(10, 54, 2)
        ry, rx = rng.integers(4, 16, 2)
        if i % 2:
            masks[i] = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1  # an ellipse
        else:
            masks[i, cy - ry:cy + ry, cx - rx:cx + rx] = True  # a box
    return masks


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    return {"masks": _masks(rng),
            "smooth": rng.random((N, SIZE, SIZE)) + np.linspace(0, 1e-6, SIZE * SIZE).reshape(SIZE, SIZE),  # no ties
            "placed": np.stack([place_cam(rng.random((8, 8)), (SIZE, SIZE)) for _ in range(N)])}  # bilinear, edge ties


def _quantus(metric, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Quantus on precomputed maps (no model is needed by its localisation metrics)."""
    x = np.zeros((len(maps), 3, SIZE, SIZE), np.float32)
    out = metric(disable_warnings=True)(model=None, x_batch=x, y_batch=np.zeros(len(maps), int),
                                        a_batch=maps[:, None].astype(np.float64), s_batch=masks[:, None].astype(np.float64))
    return np.asarray(out, dtype=np.float64)


@pytest.mark.parametrize("kind", ["smooth", "placed"])
def test_auc_equals_quantus(data, kind):
    ours = [roc_auc(a, s) for a, s in zip(data[kind], data["masks"])]
    assert np.allclose(ours, _quantus(quantus.AUC, data[kind], data["masks"]), atol=1e-12)


@pytest.mark.parametrize("kind", ["smooth", "placed"])
def test_energy_equals_relevance_mass_accuracy(data, kind):
    ours = [energy_share(a, s) for a, s in zip(data[kind], data["masks"])]
    assert np.allclose(ours, _quantus(quantus.RelevanceMassAccuracy, data[kind], data["masks"]), atol=1e-12)


def test_rank_hit_equals_relevance_rank_accuracy_without_ties(data):
    ours = [rank_hit(a, s) for a, s in zip(data["smooth"], data["masks"])]
    assert np.allclose(ours, _quantus(quantus.RelevanceRankAccuracy, data["smooth"], data["masks"]), atol=1e-12)


def test_pointing_with_tolerance_zero_equals_quantus(data):
    maps = data["smooth"].copy()
    for i, mask in enumerate(data["masks"]):  # half the peaks on the object, half off it
        ys, xs = np.nonzero(mask if i % 2 else ~mask)
        maps[i, ys[len(ys) // 2], xs[len(xs) // 2]] = 2.0
    theirs = _quantus(quantus.PointingGame, maps, data["masks"])
    ours = [pointing_game(a, s, tolerance=0) for a, s in zip(maps, data["masks"])]
    assert np.array_equal(np.asarray(ours, float), theirs) and 0 < theirs.mean() < 1
    # the deliberate difference: the default tolerance (15 px at 224 px, ~4.3 px here) turns near misses into hits
    default = [pointing_game(a, s) for a, s in zip(maps, data["masks"])]
    assert sum(default) >= sum(ours)
