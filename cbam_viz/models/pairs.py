"""Model pairs (baseline + CBAM) described by the manifest in the top-level ``models/`` folder.

A shipped model is a project checkpoint checked against its SHA-256. An external model (the
ImageNet pair) is a file the user provides, found by an environment variable, the manifest's
``path`` field, the ``models/`` folder or, for torchvision's ResNet-50, the local torch hub
cache. Nothing is ever downloaded: a missing file makes the pair unavailable with a message
saying which file to place where.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .resnet import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, ResNet, build_from_info
from .weights import WeightsError, find_torchvision_resnet50, load_checkpoint, load_weights, sha256

MODELS_DIR = Path(os.environ.get("CBAM_VIZ_MODELS", Path(__file__).resolve().parents[2] / "models"))
ROLES = ("baseline", "cbam")


class PairUnavailable(RuntimeError):
    """A pair whose weight files are missing or invalid; the message says what to do."""


@dataclass
class Pair:
    """Two loaded models and what the manifest says about them."""

    name: str
    description: str
    models: dict[str, ResNet]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return self.models["cbam"].info.class_names or [str(i) for i in range(self.models["cbam"].info.num_classes)]


def read_manifest(models_dir: Path = MODELS_DIR) -> dict[str, Any]:
    return json.loads((models_dir / "manifest.json").read_text())


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names that ship inside torchvision."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def imagenet_info(attention: str | None, name: str = "") -> ModelInfo:
    """ResNet-50 (or ResNet-50 + CBAM) for ImageNet: 1000 classes, Resize(256) + CenterCrop(224), ImageNet normalization."""
    info = ModelInfo(depth=50, attention=attention, class_names=imagenet_classes(), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    info.name = name or info.title
    return info


def _external_path(entry: dict[str, Any], models_dir: Path) -> Path | None:
    candidates = [os.environ.get(entry["env"], ""), entry.get("path") or ""]
    candidates += [str(models_dir / name) for name in entry["files"]]
    found = next((Path(c).expanduser() for c in candidates if c and Path(c).expanduser().is_file()), None)
    if found is None and entry.get("torch_hub_cache"):
        found = find_torchvision_resnet50()
    return found


def _load_entry(entry: dict[str, Any], models_dir: Path, device: str) -> ResNet:
    if entry["kind"] == "shipped":
        path = models_dir / entry["file"]
        if not path.is_file():
            raise PairUnavailable(f"{path} is missing: {entry.get('how_to_get', 'reinstall the project')}")
        digest = sha256(path)
        if digest != entry["sha256"]:
            raise PairUnavailable(f"{path}: SHA-256 {digest[:12]}... does not match the manifest ({entry['sha256'][:12]}...); the file is corrupt or was replaced")
        return load_checkpoint(path, device)
    path = _external_path(entry, models_dir)
    if path is None:
        raise PairUnavailable(f"missing {entry['title']} weights: {entry['how_to_get']}")
    try:
        return load_weights(build_from_info(imagenet_info(entry["architecture"]["attention"], entry["title"])), path).to(device).eval()
    except WeightsError as e:
        raise PairUnavailable(str(e)) from None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def pair_names(models_dir: Path = MODELS_DIR) -> list[str]:
    return list(read_manifest(models_dir)["pairs"])


def load_pair(name: str, models_dir: Path = MODELS_DIR, device: str | None = None) -> Pair:
    """Load both models of a pair; raises :class:`PairUnavailable` with a clear message."""
    manifest = read_manifest(models_dir)
    if name not in manifest["pairs"]:
        raise PairUnavailable(f"unknown pair {name!r}; known pairs: {', '.join(manifest['pairs'])}")
    spec = manifest["pairs"][name]
    entries = {role: manifest["models"][spec[role]] for role in ROLES}
    device = device or default_device()
    models = {role: _load_entry(entries[role], models_dir, device) for role in ROLES}
    return Pair(name, spec.get("description", ""), models, entries)


def load_model_file(path: str | Path, attention: str | None, device: str | None = None) -> ResNet:
    """A project checkpoint, or else ImageNet ResNet-50 weights in any supported format."""
    try:
        return load_checkpoint(path, device or default_device())
    except WeightsError as e:
        if "not a cbam-viz checkpoint" not in str(e):
            raise
    return load_weights(build_from_info(imagenet_info(attention)), path).to(device or default_device()).eval()
