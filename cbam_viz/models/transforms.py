"""Turn a PIL image into the normalized tensor a model expects (from its ModelInfo)."""
from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import v2

from .resnet import ModelInfo


def _geometry(info: ModelInfo, transforms=T) -> list:
    """Resize + center crop, or a plain square resize when ``info.resize`` is None (``transforms``:
    torchvision's ``transforms`` or ``transforms.v2``)."""
    size = info.input_size
    return [transforms.Resize(info.resize), transforms.CenterCrop(size)] if info.resize else [transforms.Resize((size, size))]


def model_transform(info: ModelInfo) -> T.Compose:
    """The full input transform: geometry, then tensor conversion and normalization."""
    return T.Compose([*_geometry(info), T.ToTensor(), T.Normalize(info.mean, info.std)])


def annotation_geometry(info: ModelInfo) -> v2.Compose:
    """The model's geometry for annotations (``tv_tensors`` boxes and masks; masks resized nearest):
    maps them onto the image that :func:`crop_for_display` returns."""
    return v2.Compose(_geometry(info, v2))


def crop_for_display(image: Image.Image, info: ModelInfo) -> Image.Image:
    """The RGB image the model sees, before normalization: what overlays are drawn on."""
    return T.Compose(_geometry(info))(image.convert("RGB"))


def display_crop(image: Image.Image, info: ModelInfo, max_side: int = 768) -> Image.Image:
    """The part of ``image`` the model sees, at the image's own resolution (the long side at most
    ``max_side``): all of it for a plain resize, else the centre square that Resize + CenterCrop keep."""
    rgb = image.convert("RGB")
    if info.resize:
        side = min(rgb.size) * info.input_size / info.resize
        left, top = (rgb.width - side) / 2, (rgb.height - side) / 2
        rgb = rgb.crop((round(left), round(top), round(left + side), round(top + side)))
    scale = max_side / max(rgb.size)
    return rgb if scale >= 1 else rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.LANCZOS)


def preprocess(image: Image.Image, info: ModelInfo) -> torch.Tensor:
    """A ``1x3xHxW`` tensor for one RGB image."""
    return model_transform(info)(image.convert("RGB")).unsqueeze(0)
