"""Scores of one batch of annotated images: every CAM method of every model under both placements,
the model-free reference maps, and top-1 accuracy.

Metrics, against the annotated object: pointing game (against the object mask), ROC-AUC and
rank_hit (relevance rank accuracy) of the map's pixel values against the mask -- these three depend
only on the order of the map's values -- energy-based pointing game (share of CAM energy inside the
union of the class's boxes), the same energy after the maps of every model of the set are
sharpened to one concentration per image (:func:`cbam_viz.data.match_concentration`), the map's
concentration (share of pixels at or above half its maximum: how sharp, not where), IoU of the CAM
thresholded at 0.5 with the mask, and grad-cam's ROAD most-relevant-first score (the target
probability lost when the 20% most relevant pixels are imputed away; higher means the map found
pixels the model needs). ROAD's imputation noise is seeded per image (dataset seed, image index), so
a score depends on the image alone, not on the batch, the process or the rank that computed it.

Each CAM is scored twice: for the annotated class (target "annotated") and for the model's own top-1
class (target "predicted"; the same map where the model is right, no ROAD score).
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

from ..data import (PLACEMENTS, REFERENCE_MAPS, concentration, mask_iou, match_concentration, place_cam, pointing_game,
                    rank_hit, reference_map, roc_auc)
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


def _metrics(cam: np.ndarray, matched: np.ndarray, target: Target, feature_shape: tuple[int, int]) -> tuple:
    """pointing, auc, rank_hit, energy, energy_matched, concentration, iou (the order of :class:`Score`)."""
    return (pointing_game(cam, target.mask, feature_shape=feature_shape), roc_auc(cam, target.mask), rank_hit(cam, target.mask),
            energy_share(cam, target.region), energy_share(matched, target.region), concentration(cam), mask_iou(cam, target.mask))


def model_input(pixels: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Normalize an Nx3xHxW uint8 batch for ``model`` (the same arithmetic as its transform's
    ToTensor + Normalize), on the model's device."""
    x = normalize(pixels.float().div(255), list(model.info.mean), list(model.info.std))
    return x.to(next(model.parameters()).device)


def _maps(model: nn.Module, role: str, x: torch.Tensor, targets: Sequence[int], method: str, layer: str | None):
    """The model's explanations of ``x`` for ``targets``, and for its own top-1 class (computed again only
    where that differs)."""
    results = explain_batch({role: model}, x, targets=targets, method=method, target_layer=layer)[role]
    own = list(results)
    wrong = [i for i, (r, t) in enumerate(zip(results, targets)) if r.prediction != t]
    if wrong:
        again = explain_batch({role: model}, x[wrong], targets=[results[i].prediction for i in wrong], method=method,
                              target_layer=layer)[role]
        for i, r in zip(wrong, again):
            own[i] = r
    return results, own


def score_batch(models: Mapping[str, nn.Module], targets: Sequence[Target], methods: Sequence[str], road: bool,
                seed: int, layer: str | None = None) -> tuple[list[Score], dict[str, tuple[int, int]]]:
    """Every score of every model on ``targets`` (same-size images) with CAMs at ``layer`` (None: the
    last block); returns the rows and each model's feature-map size."""
    shape = targets[0].mask.shape
    labels = [t.label for t in targets]
    seeds = [int(np.random.SeedSequence([seed, t.index]).generate_state(1)[0]) for t in targets]
    pixels = torch.stack([t.pixels for t in targets])
    inputs = {role: model_input(pixels, model) for role, model in models.items()}
    scores: list[Score] = []
    feature_shapes: dict[str, tuple[int, int]] = {}
    predicted: dict[str, list[str]] = {}
    correct: dict[str, list[bool]] = {}
    for method in methods:
        explained = {}
        for role, model in models.items():
            results, own = explained[role] = _maps(model, role, inputs[role], labels, method, layer)
            feature_shapes[role] = results[0].raw_cam.shape
            predicted[role] = [model.info.class_names[r.prediction] for r in results]
            correct[role] = [r.prediction == t for r, t in zip(results, labels)]
        every = [all(c[i] for c in correct.values()) for i in range(len(targets))]
        for placement in PLACEMENTS:
            scored: dict[str, dict[tuple[str, int], tuple]] = {}  # metrics by target kind, (role, image)
            for kind, pick in (("annotated", 0), ("predicted", 1)):
                cams = {role: np.stack([place_cam(r.raw_cam, shape, placement) for r in explained[role][pick]])
                        for role in models}
                done = scored[kind] = {}
                for i in range(len(targets)):
                    if kind == "predicted" and every[i]:  # every model is right: the same maps, the same metrics
                        done.update({(role, i): scored["annotated"][role, i] for role in models})
                        continue
                    for role, m in zip(cams, match_concentration([cams[role][i] for role in cams])):
                        done[role, i] = _metrics(cams[role][i], m, targets[i], feature_shapes[role])
                for role, model in models.items():
                    roads = (road_scores(inputs[role], cams[role], labels, model, seeds) if road and kind == "annotated"
                             else [None] * len(targets))
                    scores += [Score(t.image, t.index, t.class_name, role, method, placement, kind, predicted[role][i],
                                     correct[role][i], every[i], *done[role, i], roads[i])
                               for i, t in enumerate(targets)]
    for name in REFERENCE_MAPS:
        ref = reference_map(name, shape)
        for role, model in models.items():
            roads = [None] * len(targets)
            if road and name == "centre":
                roads = road_scores(inputs[role], np.repeat(ref[None], len(targets), axis=0), labels, model, seeds)
            scores += [Score(t.image, t.index, t.class_name, role, reference_source(name), "-", "-", predicted[role][i],
                             correct[role][i], every[i], *_metrics(ref, ref, t, feature_shapes[role]), roads[i])
                       for i, t in enumerate(targets)]
    return scores, feature_shapes
