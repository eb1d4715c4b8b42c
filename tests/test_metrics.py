"""Localization metrics on hand-made maps with known answers."""
import numpy as np
import pytest
from scipy import stats

from cbam_viz.data import (bootstrap_ci, energy_pointing_game, mask_iou, paired_test,
                           pointing_game)


def _point_mask(size: int, y: int, x: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y, x] = True
    return mask


def _peak(size: int, y: int, x: int) -> np.ndarray:
    cam = np.full((size, size), 0.1)
    cam[y, x] = 1.0
    return cam


# ------------------------------------------------------------- pointing game

def test_pointing_peak_inside_and_far_outside():
    mask = np.zeros((64, 64), bool)
    mask[20:30, 20:30] = True
    assert pointing_game(_peak(64, 25, 25), mask)
    assert not pointing_game(_peak(64, 60, 60), mask)


@pytest.mark.parametrize("dy, dx, hit", [(0, 15, True), (0, 16, False), (15, 0, True),
                                         (10, 11, True), (11, 11, False)])
def test_pointing_tolerance_is_15px_euclidean_at_224(dy, dx, hit):
    mask = _point_mask(224, 100, 100)
    assert pointing_game(_peak(224, 100 + dy, 100 + dx), mask) is hit  # 10,11 -> 14.87; 11,11 -> 15.56


@pytest.mark.parametrize("dx, hit", [(7, True), (8, False)])
def test_pointing_tolerance_scales_with_image_size(dx, hit):
    mask = _point_mask(112, 50, 50)  # tolerance 15 * 112 / 224 = 7.5 px
    assert pointing_game(_peak(112, 50, 50 + dx), mask) is hit


def test_pointing_uses_larger_side_and_custom_tolerance():
    mask = np.zeros((56, 112), bool)
    mask[20, 50] = True
    cam = np.zeros((56, 112))
    cam[20, 57] = 1.0  # 7 px away: a hit with 15 * 112 / 224 = 7.5, a miss with 15 * 56 / 224
    assert pointing_game(cam, mask)
    assert not pointing_game(_peak(64, 10, 11), _point_mask(64, 10, 10), tolerance=0)
    assert pointing_game(_peak(64, 10, 10), _point_mask(64, 10, 10), tolerance=0)


def test_pointing_ties_go_to_first_max_in_row_major_order():
    mask = _point_mask(64, 5, 60)
    cam = np.zeros((64, 64))
    cam[5, 60] = cam[50, 2] = 1.0  # (5, 60) comes first
    assert pointing_game(cam, mask)
    cam[4, 0] = 1.0  # now (4, 0) comes first, 56 px away
    assert not pointing_game(cam, mask)


def test_pointing_rejects_bad_input():
    with pytest.raises(ValueError):
        pointing_game(np.zeros((8, 8)), np.zeros((8, 8), bool))
    with pytest.raises(ValueError):
        pointing_game(np.zeros((8, 8)), np.ones((8, 9), bool))


# ------------------------------------------------------------ energy pointing

def test_energy_share_by_hand():
    cam = np.arange(16, dtype=float).reshape(4, 4)  # total 120
    # box x in [1, 3), y in [0, 2): cam[0:2, 1:3] = 1 + 2 + 5 + 6 = 14
    assert energy_pointing_game(cam, (1, 0, 3, 2)) == pytest.approx(14 / 120)
    # swapping the axes gives cam[1:3, 0:2] = 4 + 5 + 8 + 9 = 26
    assert energy_pointing_game(cam, (0, 1, 2, 3)) == pytest.approx(26 / 120)
    assert energy_pointing_game(cam, (3, 3, 4, 4)) == pytest.approx(15 / 120)  # x1, y1 exclusive
    assert energy_pointing_game(cam, (0, 0, 4, 4)) == pytest.approx(1.0)


def test_energy_zero_cam_and_negative_cam():
    assert energy_pointing_game(np.zeros((5, 5)), (0, 0, 2, 2)) == 0.0
    with pytest.raises(ValueError):
        energy_pointing_game(-np.ones((5, 5)), (0, 0, 2, 2))


# ------------------------------------------------------------------- IoU

def test_iou_by_hand():
    cam = np.zeros((6, 6))
    cam[0:2, 0:2] = 0.9  # 4 predicted pixels
    mask = np.zeros((6, 6), bool)
    mask[1:3, 0:3] = True  # 6 mask pixels, overlap 2 -> 2 / (4 + 6 - 2)
    assert mask_iou(cam, mask) == pytest.approx(0.25)
    assert mask_iou(cam, mask, threshold=0.95) == 0.0


def test_iou_threshold_is_inclusive_and_edge_cases():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    cam = np.zeros((4, 4))
    cam[0, 0] = 0.5
    assert mask_iou(cam, mask) == 1.0
    assert mask_iou(np.zeros((4, 4)), np.zeros((4, 4), bool)) == 0.0


# -------------------------------------------------------------- bootstrap

def test_bootstrap_mean_ci_and_determinism():
    values = np.random.default_rng(1).normal(3.0, 2.0, 400)
    mean, lo, hi = bootstrap_ci(values)
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)  # normal approximation
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert bootstrap_ci(values) == (mean, lo, hi)
    assert bootstrap_ci(values, seed=1) != (mean, lo, hi)


def test_bootstrap_narrows_with_n_and_alpha():
    rng = np.random.default_rng(2)
    _, lo_small, hi_small = bootstrap_ci(rng.normal(0, 1, 20))
    _, lo_big, hi_big = bootstrap_ci(rng.normal(0, 1, 5000))  # several memory chunks
    assert hi_big - lo_big < (hi_small - lo_small) / 5
    values = rng.normal(0, 1, 100)
    _, lo95, hi95 = bootstrap_ci(values)
    _, lo50, hi50 = bootstrap_ci(values, alpha=0.5)
    assert lo95 < lo50 < hi50 < hi95


def test_bootstrap_constant_and_bool_and_empty():
    assert bootstrap_ci([2.0] * 10) == (2.0, 2.0, 2.0)
    mean, lo, hi = bootstrap_ci([True, False, True, True])
    assert mean == 0.75 and 0.0 <= lo <= 0.75 <= hi <= 1.0
    with pytest.raises(ValueError):
        bootstrap_ci([])


# ------------------------------------------------------------ paired tests

def test_mcnemar_exact_by_hand():
    # 8 pairs only a hits, 2 only b hits, 6 both, 4 neither
    a = np.array([True] * 8 + [False] * 2 + [True] * 6 + [False] * 4)
    b = np.array([False] * 8 + [True] * 2 + [True] * 6 + [False] * 4)
    result = paired_test(a, b)
    assert result["test"] == "mcnemar_exact" and result["n"] == 20
    assert result["p_value"] == pytest.approx(112 / 1024)  # 2 * P(X >= 8), X ~ Bin(10, 1/2)
    assert result["p_value"] == pytest.approx(stats.binomtest(8, 10, 0.5).pvalue)
    assert result["mean_diff"] == pytest.approx(0.3)
    assert result["ci_low"] < 0.3 < result["ci_high"]


def test_mcnemar_without_discordant_pairs():
    a = np.array([True, False, True])
    assert paired_test(a, a.copy()) == {"test": "mcnemar_exact", "n": 3, "mean_diff": 0.0,
                                        "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}


def test_wilcoxon_by_hand_and_against_scipy():
    b = np.array([0.1, 0.5, 0.2, 0.8, 0.3])
    a = b + np.array([1, 2, 3, 4, 5]) / 10  # all 5 differences positive: exact p = 2 / 2**5
    result = paired_test(a, b)
    assert result["test"] == "wilcoxon"
    assert result["p_value"] == pytest.approx(0.0625)
    assert result["mean_diff"] == pytest.approx(0.3)

    rng = np.random.default_rng(3)
    b = rng.uniform(0, 1, 60)
    a = np.clip(b + rng.normal(0.05, 0.1, 60), 0, 1)
    result = paired_test(a, b)
    assert result["p_value"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert result["mean_diff"] == pytest.approx(np.mean(a - b))
    assert result["ci_low"] < result["mean_diff"] < result["ci_high"]


def test_wilcoxon_all_zero_differences_and_bad_input():
    x = [0.2, 0.4, 0.6]
    result = paired_test(x, x)
    assert result["test"] == "wilcoxon" and result["p_value"] == 1.0 and result["mean_diff"] == 0.0
    with pytest.raises(ValueError):
        paired_test([0.1, 0.2], [0.1])
