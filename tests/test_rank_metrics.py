"""The order-based metrics (AUC, rank hit), concentration and concentration matching, on maps with known answers."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cbam_viz.data import (concentration, energy_pointing_game, match_concentration, place_cam, pointing_game, rank_hit,
                           roc_auc, sharpen_to)
from cbam_viz.evaluate.scoring import energy_share


def _blob(size: int = 32, cy: float = 12, cx: float = 18, width: float = 6) -> np.ndarray:
    ys, xs = np.mgrid[:size, :size]
    return np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * width ** 2)) + 1e-3 * xs / size  # no ties


def _mask(size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[8:18, 12:24] = True
    return mask


def test_auc_by_hand_with_ties():
    cam = np.array([[0.9, 0.5], [0.5, 0.1]])
    mask = np.array([[True, True], [False, False]])
    # object pixels 0.9, 0.5 against background 0.5, 0.1: pairs won 1 + 1 + 0.5 (tie) + 1 = 3.5 of 4
    assert roc_auc(cam, mask) == pytest.approx(3.5 / 4)
    assert roc_auc(np.ones((4, 4)), np.eye(4, dtype=bool)) == 0.5  # a flat map is chance
    rng = np.random.default_rng(0)
    noisy = np.round(rng.random((32, 32)), 1)  # many ties
    assert roc_auc(noisy, _mask()) == pytest.approx(roc_auc_score(_mask().ravel(), noisy.ravel()))
    with pytest.raises(ValueError):
        roc_auc(cam, np.zeros((2, 2), bool))


def test_rank_hit_by_hand_and_with_ties():
    cam = np.array([[4.0, 3.0], [2.0, 1.0]])
    assert rank_hit(cam, np.array([[True, False], [False, True]])) == 0.5  # top 2 = 4, 3: one inside
    assert rank_hit(cam, np.array([[True, True], [False, False]])) == 1.0
    tied = np.array([[1.0, 1.0], [1.0, 0.0]])  # k = 1 place shared by three pixels tied at the top, one of them inside
    assert rank_hit(tied, np.array([[False, False], [True, False]])) == pytest.approx(1 / 3)
    assert rank_hit(np.ones((4, 4)), np.eye(4, dtype=bool)) == pytest.approx(0.25)  # flat map: the mask's share


def test_a_power_transform_changes_energy_but_not_where_the_map_points():
    cam, mask = _blob(), _mask()
    sharper = cam ** 2.5
    box = (12, 8, 24, 18)
    for metric in (lambda c: pointing_game(c, mask), lambda c: roc_auc(c, mask), lambda c: rank_hit(c, mask)):
        assert metric(sharper) == metric(cam)
    assert pointing_game(cam, mask) and 0.5 < roc_auc(cam, mask) < 1 and 0 < rank_hit(cam, mask) < 1
    assert energy_pointing_game(sharper, box) > energy_pointing_game(cam, box) + 0.05
    assert concentration(sharper) < concentration(cam)


def test_concentration_by_hand():
    assert concentration(np.array([[1.0, 0.5], [0.49, 0.0]])) == 0.5  # 1 and 0.5 are at or above half the maximum
    assert concentration(np.ones((3, 3))) == 1.0
    assert concentration(np.zeros((3, 3))) == 1.0  # flat, like any constant map


def test_matching_equalizes_concentration_and_keeps_the_order():
    narrow, broad = _blob(width=4), _blob(cy=16, cx=10, width=8)
    assert concentration(narrow) < concentration(broad)
    a, b = match_concentration([narrow, broad])
    assert np.array_equal(a, narrow)  # the sharper map is left alone
    assert concentration(b) == concentration(narrow)
    assert np.array_equal(np.argsort(b, axis=None), np.argsort(broad, axis=None))  # same order of pixels
    assert b.max() == pytest.approx(broad.max())
    mask = _mask()
    assert roc_auc(b, mask) == roc_auc(broad, mask) and rank_hit(b, mask) == rank_hit(broad, mask)
    assert energy_share(b, mask) != pytest.approx(energy_share(broad, mask), abs=1e-3)


def test_matching_placed_cams_gets_as_close_as_their_ties_allow():
    rng = np.random.default_rng(3)
    for _ in range(20):
        maps = [place_cam(rng.random((8, 8)) ** k, (64, 64)) for k in (1, 3)]
        matched = match_concentration(maps)
        shares = [concentration(m) for m in matched]
        assert abs(shares[0] - shares[1]) <= 0.02  # edge rows repeat values: a tie moves pixels in blocks
        assert min(shares) <= min(concentration(m) for m in maps) + 1e-12


def test_sharpen_to_returns_gamma_one_when_nothing_to_do():
    cam = _blob()
    same, gamma = sharpen_to(cam, 1.0)
    assert gamma == 1.0 and same is not None and np.array_equal(same, cam)
    sharper, gamma = sharpen_to(cam, concentration(cam) / 2)
    assert gamma > 1 and concentration(sharper) == pytest.approx(concentration(cam) / 2, abs=1 / cam.size)
