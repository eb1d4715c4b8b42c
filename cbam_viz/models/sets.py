"""Model sets (2-4 models with roles, e.g. baseline / SE / CBAM) described by the manifest in the
top-level ``models/`` folder.

A shipped model is a project checkpoint checked against its SHA-256. An external model (the ImageNet
set) is a file found by an environment variable, the manifest's ``path`` field, or else the first of
its ``files`` (names or glob patterns, in order of preference) found in the ``models/`` folder, the
weights folder (``CBAM_VIZ_WEIGHTS``, default ``~/.cache/cbam-viz/weights``, where
``bash run.sh cli weights fetch`` puts its downloads), the folders ``weights fetch --dir`` registered
or, for torchvision's ResNet-50, the local torch hub cache (:mod:`.locate`). A file that is a published one (by its
name) is described as itself: title, accuracy and preprocessing. Nothing is downloaded here: a missing
file makes the set unavailable with a message saying which file to place where, and how to fetch it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import ModelsConfigError, model_info
from .locate import MODELS_DIR, external_path, read_manifest
from .published import Source, source_of
from .resnet import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, ResNet, build_from_info
from .weights import WeightsError, load_checkpoint, load_weights, sha256

MAX_MODELS = 4
ROLE_TITLES = {"baseline": "Baseline", "se": "SE", "cbam": "CBAM"}


def role_title(role: str) -> str:
    """How a role reads for people: "Baseline", "SE", "CBAM", or the role itself."""
    return ROLE_TITLES.get(role, role)


class SetUnavailable(RuntimeError):
    """A set whose weight files are missing or invalid; the message says what to do."""


@dataclass
class ModelSet:
    """2-4 loaded models by role, in the manifest's order (the first is the reference, usually the
    baseline), and what the manifest says about them."""

    name: str
    description: str
    models: dict[str, ResNet]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)  # roles whose file is a published one

    @property
    def roles(self) -> list[str]:
        return list(self.models)

    @property
    def info(self) -> ModelInfo:
        """The reference model's info: every model of a set shares classes and input size, and displays and
        ``evaluate`` use its crop. Preprocessing may differ (torchvision's V2 baseline resizes to 232, the
        others to 256): ``explain`` feeds each model its own crop and places its maps onto this one's."""
        return next(iter(self.models.values())).info

    @property
    def class_names(self) -> list[str]:
        return self.info.class_names or [str(i) for i in range(self.info.num_classes)]

    @property
    def generator(self) -> str:
        """The generator difficulty the set was trained on (its manifest's ``generator``; older sets: "easy"):
        what its generated images (``evaluate``, the app's examples, a study's demo stimuli) are drawn from."""
        return next(iter(self.entries.values()), {}).get("generator", "easy")


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names that ship inside torchvision."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def imagenet_info(attention: str | None, name: str = "", resize: int = 256, crop: int = 224) -> ModelInfo:
    """ResNet-50 (plain, + SE or + CBAM) for ImageNet: 1000 classes, Resize(resize) + CenterCrop(crop), ImageNet normalization."""
    info = ModelInfo(depth=50, attention=attention, class_names=imagenet_classes(), input_size=crop, resize=resize,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD)
    info.name = name or info.title
    return info


def _published_info(attention: str | None, source: Source | None, title: str = "") -> ModelInfo:
    """ImageNet info for a file: a published one's variant in the title, and its preprocessing."""
    if source is None:
        return imagenet_info(attention, title)
    info = imagenet_info(attention, title, source.resize, source.crop)
    info.name += f" {source.variant}" if source.variant else ""
    return info


def _load_external(model_id: str, entry: dict[str, Any], models_dir: Path, device: str) -> tuple[ResNet, Source | None]:
    """The model of an external entry and, when its file is a published one, that file's source:
    titled with the source's variant and fed with the source's preprocessing."""
    path = external_path(entry, models_dir)
    if path is None:
        raise SetUnavailable(f"missing {entry['title']} weights: {entry['how_to_get']}")
    source = source_of(path, model_id)
    info = _published_info(entry["architecture"]["attention"], source, entry["title"])
    try:
        return load_weights(build_from_info(info), path).to(device).eval(), source
    except WeightsError as e:
        raise SetUnavailable(str(e)) from None


def _load_entry(model_id: str, entry: dict[str, Any], models_dir: Path, device: str) -> tuple[ResNet, Source | None]:
    """A manifest entry's model and, for an external file that is a published one, its source."""
    if entry["kind"] == "external":
        return _load_external(model_id, entry, models_dir, device)
    if entry["kind"] == "shipped":
        path = models_dir / entry["file"]
        if not path.is_file():
            raise SetUnavailable(f"{path} is missing: {entry.get('how_to_get', 'reinstall the project')}")
        digest = sha256(path)
        if digest != entry["sha256"]:
            raise SetUnavailable(f"{path}: SHA-256 {digest[:12]}... does not match the manifest ({entry['sha256'][:12]}...); the file is corrupt or was replaced")
        return load_checkpoint(path, device), None
    try:  # kind "user": from a --models file (models/config.py)
        return load_weights(build_from_info(model_info(entry)), entry["file"]).to(device).eval(), None
    except WeightsError as e:
        raise SetUnavailable(str(e)) from None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def combined_manifest(models_dir: Path = MODELS_DIR, user: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of ``models_dir`` plus the models and sets of a user's models file
    (`config.read_models_config`); a set or model id defined twice is an error."""
    manifest = read_manifest(models_dir)
    if user:
        for key in ("models", "sets"):
            clash = set(manifest[key]) & set(user[key])
            if clash:
                raise ModelsConfigError(f"your models file redefines {key[:-1]} {sorted(clash)[0]!r} of "
                                        "models/manifest.json: choose another name")
            manifest[key] = {**manifest[key], **user[key]}
    return manifest


def set_names(models_dir: Path = MODELS_DIR, user: dict[str, Any] | None = None) -> list[str]:
    """Every set, less the replicate sets (other training seeds) that another set lists: they are for
    ``evaluate``, and load by name only."""
    sets = combined_manifest(models_dir, user)["sets"]
    replicas = {r for spec in sets.values() for r in spec.get("replicates", [])}
    return [name for name in sets if name not in replicas]


def _shared_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """What replicates of a model must share: generator, input size, classes, depth."""
    depth = entry.get("depth", entry.get("architecture", {}).get("depth"))
    return {"generator": entry.get("generator"), "input size": entry.get("input_size"),
            "classes": entry.get("class_names"), "depth": depth}


def replicate_names(name: str, models_dir: Path = MODELS_DIR, user: dict[str, Any] | None = None) -> list[str]:
    """``name`` and the sets its manifest entry lists as ``replicates``: the same models trained with
    other seeds (``train --seeds``); SetUnavailable for an unknown, repeated or mismatched replicate
    (other roles or role order, generator, input size, classes or depth)."""
    manifest = combined_manifest(models_dir, user)
    sets = manifest["sets"]
    if name not in sets:
        raise SetUnavailable(f"unknown model set {name!r}; known sets: {', '.join(sets)}")
    names = [name, *sets[name].get("replicates", [])]
    unknown = [n for n in names if n not in sets]
    if unknown:
        raise SetUnavailable(f"model set {name!r} lists unknown replicate set(s) {', '.join(unknown)}")
    if len(set(names)) < len(names):
        raise SetUnavailable(f"model set {name!r} lists a replicate twice, or itself")
    for other in names[1:]:
        if list(sets[other]["models"]) != list(sets[name]["models"]):
            raise SetUnavailable(f"replicate set {other!r} of {name!r} has other roles ({', '.join(sets[other]['models'])}); "
                                 "replicates need the same roles in the same order")
        for role, model_id in sets[name]["models"].items():
            mine, theirs = _shared_fields(manifest["models"][model_id]), _shared_fields(manifest["models"][sets[other]["models"][role]])
            differ = [key for key in mine if mine[key] != theirs[key]]
            if differ:
                raise SetUnavailable(f"replicate set {other!r} of {name!r}: its {role} model differs in {differ[0]}; "
                                     "replicates differ only in the training seed")
    return names


def load_set(name: str, models_dir: Path = MODELS_DIR, device: str | None = None,
             user: dict[str, Any] | None = None) -> ModelSet:
    """Load every model of a set (of the manifest, or of ``user``, a models file's content); raises
    :class:`SetUnavailable` with a clear message (naming every missing file)."""
    manifest = combined_manifest(models_dir, user)
    if name not in manifest["sets"]:
        raise SetUnavailable(f"unknown model set {name!r}; known sets: {', '.join(manifest['sets'])}")
    spec = manifest["sets"][name]
    entries = {role: manifest["models"][model_id] for role, model_id in spec["models"].items()}
    if not 2 <= len(entries) <= MAX_MODELS:
        raise SetUnavailable(f"model set {name!r} has {len(entries)} models; a set has 2 to {MAX_MODELS}")
    device = device or default_device()
    models, sources, missing = {}, {}, []
    for role, entry in entries.items():
        try:
            models[role], source = _load_entry(spec["models"][role], entry, models_dir, device)
            sources.update({role: source} if source else {})
        except SetUnavailable as e:
            missing.append(str(e))
    if missing:
        raise SetUnavailable("; ".join(missing))
    return ModelSet(name, spec.get("description", ""), models, entries, sources)


def load_model_file(path: str | Path, attention: str | None, device: str | None = None) -> ResNet:
    """A project checkpoint, or else ImageNet ResNet-50 weights in any supported format."""
    try:
        return load_checkpoint(path, device or default_device())
    except WeightsError as e:
        if "not a cbam-viz checkpoint" not in str(e):
            raise
    info = _published_info(attention, source_of(Path(path)))
    return load_weights(build_from_info(info), path).to(device or default_device()).eval()
