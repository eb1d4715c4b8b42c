"""Synthetic shapes with ground truth, and localization metrics."""
from .dataset import MEAN, STD, SynthShapes, default_transform, write_samples
from .metrics import (bootstrap_ci, energy_pointing_game, mask_iou, paired_test,
                      pointing_game)
from .synth import CLASSES, NUM_CLASSES, Sample, render_sample

__all__ = [
    "CLASSES", "MEAN", "NUM_CLASSES", "STD", "Sample", "SynthShapes", "bootstrap_ci",
    "default_transform", "energy_pointing_game", "mask_iou", "paired_test",
    "pointing_game", "render_sample", "write_samples",
]
