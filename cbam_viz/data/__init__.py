"""Synthetic shapes with ground truth, and localization metrics."""
from .dataset import MEAN, STD, SynthShapes, default_transform, write_samples
from .metrics import (PLACEMENTS, REFERENCE_MAPS, bootstrap_ci, concentration, energy_pointing_game, holm,
                      mask_iou, match_concentration, mean_ci, newcombe_paired_ci, paired_test, peak_location,
                      place_cam, pointing_game, pointing_tolerance, rank_hit, reference_map, roc_auc, sharpen_to,
                      wilson_ci)
from .synth import CLASSES, DIFFICULTIES, EASY, HARD, HARDER, MEDIUM, NUM_CLASSES, Difficulty, Sample, render_sample

__all__ = [
    "CLASSES", "DIFFICULTIES", "Difficulty", "EASY", "HARD", "HARDER", "MEAN", "MEDIUM", "NUM_CLASSES", "PLACEMENTS", "REFERENCE_MAPS", "STD", "Sample",
    "SynthShapes", "bootstrap_ci", "concentration", "default_transform", "energy_pointing_game", "holm",
    "mask_iou", "match_concentration", "mean_ci", "newcombe_paired_ci", "paired_test", "peak_location", "place_cam",
    "pointing_game", "pointing_tolerance", "rank_hit", "reference_map", "render_sample", "roc_auc", "sharpen_to", "wilson_ci",
    "write_samples",
]
