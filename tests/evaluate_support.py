"""Tiny real models (random weights) and small annotated datasets written from the generator, for the evaluate tests."""
from __future__ import annotations

import json
from pathlib import Path

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


def tiny_models_file(folder: Path, name: str = "tiny3") -> Path:
    """:func:`tiny_set`'s models saved as state dicts, registered as set ``name`` in a models TOML file (for the CLI)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for role, model in tiny_set(name).models.items():
        torch.save(model.state_dict(), folder / f"{role}.pt")
        lines += [f"[models.{name}-{role}]", f'path = "{role}.pt"', "depth = 18", f'attention = "{model.info.attention or "none"}"',
                  'options = { width = 4, stem = "small" }', f"class_names = {json.dumps(list(CLASSES))}",
                  f"input_size = {SIZE}", "resize = false", "mean = [0.5, 0.5, 0.5]", "std = [0.2, 0.2, 0.2]", ""]
    lines += [f"[sets.{name}]", f'models = {{ cbam = "{name}-cbam", baseline = "{name}-baseline", se = "{name}-se" }}']
    path = folder / "models.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
