"""Tiny real models (random weights) and small annotated datasets written from the generator, for the evaluate tests."""
from __future__ import annotations

import torch

from cbam_viz.data import CLASSES
from cbam_viz.models import build_resnet
from cbam_viz.models.sets import ModelSet

SIZE = 48


def tiny(attention: str | None, seed: int, classes: list[str] = list(CLASSES), size: int = SIZE,
         resize: int | None = None) -> torch.nn.Module:
    """A width-4 ResNet-18 knowing ``classes`` at ``size`` px (``resize``: Resize + CenterCrop geometry)."""
    torch.manual_seed(seed)
    model = build_resnet(18, attention, num_classes=len(classes), width=4, stem="small")
    info = model.info
    info.class_names, info.input_size, info.resize, info.mean, info.std = list(classes), size, resize, (0.5,) * 3, (0.2,) * 3
    return model.eval()


def tiny_set(name: str = "tiny3", **options) -> ModelSet:
    """Baseline, SE and CBAM listed out of order (the baseline must still be the reference); trained on the easy generator."""
    models = {"cbam": tiny("cbam", 2, **options), "baseline": tiny(None, 0, **options), "se": tiny("se", 1, **options)}
    return ModelSet(name, "", models, {r: {"generator": "easy"} for r in models})
