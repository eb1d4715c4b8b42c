"""Localization metrics on hand-made maps with known answers."""
import numpy as np
import pytest
from scipy import stats

from cbam_viz.data import (bootstrap_ci, energy_pointing_game, holm, mask_iou, mean_ci, newcombe_paired_ci,
                           paired_test, peak_location, place_cam, pointing_game, pointing_tolerance,
                           reference_map, wilson_ci)

Z = stats.norm.ppf(0.975)


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


def test_pointing_tolerance_never_below_half_a_feature_cell():
    assert pointing_tolerance((64, 64)) == pytest.approx(15 * 64 / 224)  # 4.29 px
    assert pointing_tolerance((64, 64), (4, 4)) == 8.0  # 16 px cells: the floor wins
    assert pointing_tolerance((224, 224), (14, 14)) == 15.0  # 16 px cells at 224: 15 px wins
    assert pointing_tolerance((224, 224), (7, 7)) == 16.0
    assert pointing_tolerance((64, 128), (4, 4)) == 16.0  # the coarser axis: 32 px cells
    mask = _point_mask(64, 30, 30)
    six_away, nine_away = _peak(64, 30, 36), _peak(64, 30, 39)
    assert not pointing_game(six_away, mask) and pointing_game(six_away, mask, feature_shape=(4, 4))
    assert not pointing_game(nine_away, mask, feature_shape=(4, 4))


def test_peak_is_the_centroid_of_the_maximum_plateau():
    cam = np.full((64, 64), 0.2)
    cam[0:8, 0:8] = 1.0  # the corner plateau grad-cam's resize makes when a corner cell is the maximum
    cam[10, 10] = 1.0 - 1e-9  # within the plateau tolerance of the maximum
    assert peak_location(cam) == pytest.approx((3.5 + (10 - 3.5) / 65, 3.5 + (10 - 3.5) / 65))
    cam[10, 10] = 0.9
    assert peak_location(cam) == (3.5, 3.5)
    mask = _point_mask(64, 4, 12)  # 8.5 px from the centroid, 12.6 px from the first maximum (0, 0)
    assert pointing_game(cam, mask, tolerance=9 * 224 / 64)
    assert not pointing_game(cam, mask, tolerance=8 * 224 / 64)
    assert peak_location(np.zeros((5, 9))) == (2.0, 4.0)  # a constant map points at the centre


def test_peak_of_a_non_convex_plateau_stays_on_the_plateau():
    cam = np.zeros((20, 20))
    cam[0, 0:10] = cam[0:10, 0] = 1.0  # an L: its centroid (2.4, 2.4) lies off the plateau
    assert peak_location(cam) == (0.0, 2.0)  # nearest plateau pixels (0, 2) and (2, 0): row-major first
    cam = np.zeros((20, 20))
    cam[2, 3] = cam[2, 15] = 1.0  # two separate equal maxima: centroid (2, 9) between them
    assert peak_location(cam) == (2.0, 3.0)


def test_pointing_rejects_bad_input():
    with pytest.raises(ValueError):
        pointing_game(np.zeros((8, 8)), np.zeros((8, 8), bool))
    with pytest.raises(ValueError):
        pointing_game(np.zeros((8, 8)), np.ones((8, 9), bool))


# ------------------------------------------------------------- placement

def test_placements_of_a_known_4x4_map():
    raw = np.tile(np.arange(4.0), (4, 1))  # columns 0, 1, 2, 3: normalized to 0, 1/3, 2/3, 1
    half = place_cam(raw, (64, 64), "half-pixel")[0]
    field = place_cam(raw, (64, 64), "receptive-field")[0]
    # half-pixel: cell i sits at 16 i + 7.5, so pixels 0-7 repeat cell 0 and 56-63 repeat cell 3
    assert half[:8] == pytest.approx(0) and half[56:] == pytest.approx(1)
    assert half[23] == pytest.approx((1 - 1 / 32) / 3) and half[24] == pytest.approx((1 + 1 / 32) / 3)
    # receptive-field: cell i sits at 16 i, half a cell (8 px) earlier; 48-63 repeat cell 3
    assert field[[0, 16, 32, 48]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert field[8] == pytest.approx(1 / 6) and field[48:] == pytest.approx(1)
    assert peak_location(place_cam(raw, (64, 64), "half-pixel"))[1] == 59.5
    assert peak_location(place_cam(raw, (64, 64), "receptive-field"))[1] == 55.5
    with pytest.raises(ValueError, match="placement"):
        place_cam(raw, (64, 64), "nearest")


@pytest.mark.parametrize("raw_shape, out_shape", [((4, 4), (64, 64)), ((7, 7), (224, 224)), ((3, 5), (50, 41))])
def test_half_pixel_placement_is_grad_cams_resize(raw_shape, out_shape):
    from pytorch_grad_cam.utils.image import scale_cam_image

    raw = np.random.default_rng(4).random(raw_shape).astype(np.float32) * 3
    expected = scale_cam_image(raw[None], (out_shape[1], out_shape[0]))[0]
    assert place_cam(raw, out_shape, "half-pixel") == pytest.approx(expected, abs=1e-6)


def test_reference_maps_give_chance_scores():
    uniform, centre = reference_map("uniform", (64, 64)), reference_map("centre", (64, 64))
    assert uniform.min() == uniform.max() == 1.0
    assert centre.max() == centre[31, 31] == centre[32, 32] and centre[0, 0] == pytest.approx(0, abs=1e-6)
    mask = np.zeros((64, 64), bool)
    mask[40:50, 10:40] = True  # 300 px; its nearest pixels to the centre (31.5, 31.5) are 8.51 px away
    assert mask_iou(uniform, mask) == pytest.approx(300 / 4096)
    assert energy_pointing_game(uniform, (10, 40, 40, 50)) == pytest.approx(300 / 4096)
    assert peak_location(uniform) == peak_location(centre) == (31.5, 31.5)
    assert pointing_game(uniform, mask, feature_shape=(4, 4)) is False  # 8.5 > 8 px
    assert pointing_game(uniform, mask, feature_shape=(2, 2)) is True  # 16 px tolerance
    with pytest.raises(ValueError):
        reference_map("gaussian", (8, 8))


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


def test_mcnemar_without_discordant_pairs_has_an_interval_of_nonzero_width():
    a = np.ones(20, bool)
    result = paired_test(a, a.copy())
    assert result["test"] == "mcnemar_exact" and result["p_value"] == 1.0 and result["mean_diff"] == 0.0
    half = 1 - 20 / (20 + Z ** 2)  # 1 - the Wilson lower bound at 20 of 20
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((-half, half))


def test_permutation_test_by_hand_and_on_a_known_shift():
    b = np.array([0.1, 0.5, 0.2, 0.8, 0.3])
    a = b + np.array([1, 2, 3, 4, 5]) / 10  # all 5 differences positive: exact p = 2 / 2**5
    result = paired_test(a, b)
    assert result["test"] == "permutation"
    assert result["p_value"] == pytest.approx(0.0625)
    assert result["mean_diff"] == pytest.approx(0.3)
    mixed = paired_test(np.array([1, -2, 3, -4, 5]) / 10, np.zeros(5))  # 26 of 32 sign patterns reach |mean| >= 0.06
    assert mixed["p_value"] == pytest.approx(26 / 32)

    rng = np.random.default_rng(3)
    b = rng.uniform(0, 1, 200)
    shifted = paired_test(b + 0.1 + rng.normal(0, 0.05, 200), b)
    assert shifted["p_value"] == pytest.approx(2 / 10_001)  # the floor of 10,000 random flips, two-sided
    assert shifted["ci_low"] < 0.1 < shifted["ci_high"] and shifted["ci_low"] > 0.08
    null = paired_test(np.tile([0.1, -0.1], 100), np.zeros(200))  # symmetric differences, mean 0
    assert null["p_value"] > 0.9 and null["ci_low"] < 0 < null["ci_high"]


def test_test_and_interval_are_about_the_mean_not_the_median():
    diff = np.array([0.001] * 90 + [-1.0] * 10)  # median +0.001, mean -0.0991 (the ROAD pattern)
    result = paired_test(diff, np.zeros(100))
    assert np.median(diff) > 0 > result["mean_diff"] == pytest.approx(-0.0991)
    assert result["p_value"] < 0.01 and result["ci_high"] < 0
    assert stats.wilcoxon(diff).pvalue < 0.05  # a rank test "finds" a shift the other way


def test_paired_test_all_zero_differences_and_bad_input():
    x = [0.2, 0.4, 0.6]
    result = paired_test(x, x)
    assert result["test"] == "permutation" and result["p_value"] == 1.0 and result["mean_diff"] == 0.0
    with pytest.raises(ValueError):
        paired_test([0.1, 0.2], [0.1])


# -------------------------------------------------------- intervals, Holm

def test_wilson_interval_by_formula_and_at_the_edges():
    def by_formula(k: int, n: int) -> tuple[float, float]:
        centre = (k + Z ** 2 / 2) / (n + Z ** 2)
        half = Z / (n + Z ** 2) * np.sqrt(k * (n - k) / n + Z ** 2 / 4)
        return centre - half, centre + half

    p, lo, hi = wilson_ci([True] * 7 + [False] * 13)
    assert p == 0.35 and (lo, hi) == pytest.approx(by_formula(7, 20))
    p, lo, hi = wilson_ci(np.ones(1000, bool))  # 100%: not "1.000 [1.000, 1.000]"
    assert p == 1.0 and hi == pytest.approx(1.0) and lo == pytest.approx(1000 / (1000 + Z ** 2)) and lo < 0.997
    assert wilson_ci(np.zeros(20, bool))[1:] == pytest.approx((0.0, 1 - 20 / (20 + Z ** 2)))
    assert mean_ci(np.ones(20, bool)) == wilson_ci(np.ones(20, bool))
    assert mean_ci(np.ones(20)) == (1.0, 1.0, 1.0)  # floats: bootstrap of the mean


def test_newcombe_interval_reduces_to_the_wilson_square_root_when_uncorrelated():
    # 5 both, 5 only a, 5 only b, 5 neither: phi = 0, p_a = p_b = 0.5
    a = np.array([True] * 10 + [False] * 10)
    b = np.array([True] * 5 + [False] * 5 + [True] * 5 + [False] * 5)
    _, lo, hi = wilson_ci(a)
    half = np.hypot(0.5 - lo, hi - 0.5)
    assert newcombe_paired_ci(a, b) == pytest.approx((0.0, -half, half))
    # identical pairs narrow it, but Newcombe's corrected phi (AD - BC - n/2 = 90 of 100) keeps some width
    _, lo_same, hi_same = newcombe_paired_ci(a, a)
    assert -half < lo_same < 0 < hi_same < half and hi_same == pytest.approx(half * np.sqrt(2 * (1 - 0.9)) / np.sqrt(2))
    _, lo_same, hi_same = newcombe_paired_ci(a[2:], a[2:])  # 8 of 18: asymmetric arms
    assert -half < lo_same < 0 < hi_same < half


def _table(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([True] * both + [True] * only_a + [False] * only_b + [False] * neither)
    b = np.array([True] * both + [False] * only_a + [True] * only_b + [False] * neither)
    return a, b


def test_newcombe_interval_matches_the_published_worked_example_and_the_reference_formula():
    # Altman et al., "Statistics with Confidence" (2000), the paired example after Newcombe (1998):
    # 14 both, 5 only the first, 0 only the second, 22 neither: 0.122, 95% CI 0.011 to 0.226
    diff, lo, hi = newcombe_paired_ci(*_table(14, 5, 0, 22))
    assert (round(diff, 3), round(lo, 3), round(hi, 3)) == (0.122, 0.011, 0.226)
    for counts in [(59, 6, 16, 80), (1, 1, 7, 12), (3, 0, 0, 3), (0, 4, 2, 9), (40, 1, 2, 1)]:
        # contingencytables' Newcombe_square_and_add_CI_paired_2x2, transcribed
        n11, n12, n21, n22 = counts
        n = sum(counts)
        p1, p2 = (n11 + n12) / n, (n11 + n21) / n
        _, l1, u1 = wilson_ci(_table(*counts)[0])
        _, l2, u2 = wilson_ci(_table(*counts)[1])
        margins = (n11 + n12) * (n21 + n22) * (n11 + n21) * (n12 + n22)
        cross = n11 * n22 - n12 * n21
        psi = 0.0 if margins == 0 else ((cross - n / 2) if cross > n / 2 else (0 if cross >= 0 else cross)) / np.sqrt(margins)
        low = p1 - p2 - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2))
        high = p1 - p2 + np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * psi * (p2 - l2) * (u1 - p1))
        assert newcombe_paired_ci(*_table(*counts)) == pytest.approx((p1 - p2, low, high)), counts


def test_holm_on_a_known_vector():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 -> max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.02]) == pytest.approx([0.02])
