"""Scores of one batch of annotated images: every CAM method of every model under both placements,
the model-free reference maps, and top-1 accuracy.

Metrics, with the annotated class as target: pointing game (against the object mask), energy-based
pointing game (share of CAM energy inside the union of the class's boxes), IoU of the CAM
thresholded at 0.5 with the mask, and grad-cam's ROAD most-relevant-first score (the target
probability lost when the 20% most relevant pixels are imputed away; higher means the map found
pixels the model needs). ROAD's imputation noise is seeded per image (dataset seed, image index), so
a score depends on the image alone, not on the batch, the process or the rank that computed it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn
from torchvision.transforms.functional import normalize

from ..data import PLACEMENTS, REFERENCE_MAPS, mask_iou, place_cam, pointing_game, reference_map
from ..explain import explain_batch
from .summary import Score, reference_source


@dataclass
class Target:
    """One image as the models see it, with what it is evaluated against (all at the model's input size)."""

    index: int  # position in the dataset: orders the results and seeds ROAD's noise
    image: str  # the image's name in the results
    label: int  # the target class index
    class_name: str
    pixels: torch.Tensor  # 3xHxW uint8: the crop the model sees
    mask: np.ndarray  # HxW bool: the object (its segmentation, else its boxes filled)
    region: np.ndarray  # HxW bool: the union of the class's boxes


def energy_share(cam: np.ndarray, region: np.ndarray) -> float:
    """Energy-based pointing game over a region: the share of the CAM's total energy inside
    ``region`` (for one box, Score-CAM's energy pointing game); 0 when the CAM sums to 0."""
    total = float(cam.sum(dtype=np.float64))
    return float(cam[region].sum(dtype=np.float64) / total) if total else 0.0


class _SeededPerturbation:
    """ROAD's perturbation with its noise drawn from a per-image seed (the global RNG is left as it was)."""

    def __init__(self, perturbation, seeds: Sequence[int]) -> None:
        self.perturbation, self.seeds = perturbation, iter(seeds)

    def __call__(self, tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(next(self.seeds))
            return self.perturbation(tensor, mask)


def road_scores(x: torch.Tensor, cams: np.ndarray, labels: Sequence[int], model: nn.Module, seeds: Sequence[int]) -> list[float]:
    """ROAD most-relevant-first (20% of pixels imputed) per image: the drop of the target's probability."""
    metric = ROADMostRelevantFirst(percentile=80)
    metric.perturbation = _SeededPerturbation(metric.perturbation, seeds)
    change = metric(x, cams, [ClassifierOutputSoftmaxTarget(t) for t in labels], model)
    return (-np.asarray(change, dtype=np.float64)).tolist()


def _metrics(cam: np.ndarray, target: Target, feature_shape: tuple[int, int]) -> tuple[bool, float, float]:
    return (pointing_game(cam, target.mask, feature_shape=feature_shape), energy_share(cam, target.region),
            mask_iou(cam, target.mask))


def model_input(pixels: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Normalize an Nx3xHxW uint8 batch for ``model`` (the same arithmetic as its transform's
    ToTensor + Normalize), on the model's device."""
    x = normalize(pixels.float().div(255), list(model.info.mean), list(model.info.std))
    return x.to(next(model.parameters()).device)


def score_batch(models: Mapping[str, nn.Module], targets: Sequence[Target], methods: Sequence[str], road: bool,
                seed: int, layer: str | None = None) -> tuple[list[Score], dict[str, tuple[int, int]]]:
    """Every score of every model on ``targets`` (same-size images) with CAMs at ``layer`` (None: the
    last block); returns the rows and each model's feature-map size."""
    shape = targets[0].mask.shape
    labels = [t.label for t in targets]
    seeds = [int(np.random.SeedSequence([seed, t.index]).generate_state(1)[0]) for t in targets]
    pixels = torch.stack([t.pixels for t in targets])
    references = {name: reference_map(name, shape) for name in REFERENCE_MAPS}
    scores: list[Score] = []
    feature_shapes: dict[str, tuple[int, int]] = {}
    for role, model in models.items():
        x = model_input(pixels, model)
        correct: list[bool] = []
        for method in methods:
            results = explain_batch({role: model}, x, targets=labels, method=method, target_layer=layer)[role]
            feature_shape = feature_shapes[role] = results[0].raw_cam.shape
            correct = correct or [r.prediction == t.label for r, t in zip(results, targets)]
            for placement in PLACEMENTS:
                cams = np.stack([place_cam(r.raw_cam, shape, placement) for r in results])
                roads = road_scores(x, cams, labels, model, seeds) if road else [None] * len(targets)
                scores += [Score(t.image, t.index, t.class_name, role, method, placement, ok, *_metrics(cam, t, feature_shape), rd)
                           for t, ok, cam, rd in zip(targets, correct, cams, roads)]
        for name, ref in references.items():
            roads = [None] * len(targets)
            if road and name == "centre":
                roads = road_scores(x, np.repeat(ref[None], len(targets), axis=0), labels, model, seeds)
            scores += [Score(t.image, t.index, t.class_name, role, reference_source(name), "-", ok,
                             *_metrics(ref, t, feature_shapes[role]), rd) for t, ok, rd in zip(targets, correct, roads)]
    return scores, feature_shapes
