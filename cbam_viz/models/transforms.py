"""Turn a PIL image into the normalized tensor a model expects (from its ModelInfo)."""
from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .resnet import ModelInfo

Box = tuple[float, float, float, float]  # (left, top, right, bottom): pixel edges, fractional
MAX_KEPT_ASPECT = 4  # before Resize + CenterCrop, longer sides are cut to this many times the shorter one


class CentreToAspect(v2.Transform):
    """Cut the longer side, centred, to at most ``max_aspect`` times the shorter one (other images pass unchanged).
    Before Resize(short side) + CenterCrop, which keep only the centre, the model sees the same part of the image
    while the resized image stays bounded: a 3000x40 banner resizes to 1024x256, not 19200x256."""

    def __init__(self, max_aspect: int = MAX_KEPT_ASPECT):
        super().__init__()
        self.max_aspect = max_aspect

    def make_params(self, flat_inputs: list) -> dict:
        height, width = v2.query_size(flat_inputs)
        return {"size": [min(height, self.max_aspect * width), min(width, self.max_aspect * height)],
                "unchanged": max(height, width) <= self.max_aspect * min(height, width)}

    def transform(self, inpt: object, params: dict) -> object:
        return inpt if params["unchanged"] else self._call_kernel(F.center_crop, inpt, output_size=params["size"])


def _geometry(info: ModelInfo, transforms=T) -> list:
    """Resize + center crop (after :class:`CentreToAspect`), or a plain square resize when ``info.resize`` is None
    (``transforms``: torchvision's ``transforms`` or ``transforms.v2``)."""
    size = info.input_size
    if not info.resize:
        return [transforms.Resize((size, size))]
    return [CentreToAspect(), transforms.Resize(info.resize), transforms.CenterCrop(size)]


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


def _crop_offset(size: int, crop: int) -> int:
    """Where CenterCrop starts along one side of ``size`` px (negative: it pads, as torchvision does)."""
    return int(round((size - crop) / 2.0)) if size >= crop else -((crop - size) // 2)


def crop_box(size: tuple[int, int], info: ModelInfo) -> Box:
    """The part of a ``(width, height)`` image that the model's input covers, in the image's pixel
    coordinates: torchvision's Resize (short side, long side truncated) + CenterCrop, or the whole
    image for a plain square resize."""
    width, height = size
    if not info.resize:
        return 0.0, 0.0, float(width), float(height)
    short, long = sorted((width, height))
    new_long = int(info.resize * long / short)
    new_w, new_h = (info.resize, new_long) if width <= height else (new_long, info.resize)
    left, top = _crop_offset(new_w, info.input_size), _crop_offset(new_h, info.input_size)
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + info.input_size) * sx, (top + info.input_size) * sy


def display_crop(image: Image.Image, info: ModelInfo, max_side: int = 768) -> Image.Image:
    """The part of ``image`` the model sees (:func:`crop_box`, rounded to whole pixels), at the image's own
    resolution (the long side at most ``max_side``)."""
    rgb = image.convert("RGB")
    if info.resize:
        rgb = rgb.crop(tuple(round(edge) for edge in crop_box(rgb.size, info)))
    scale = max_side / max(rgb.size)
    return rgb if scale >= 1 else rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.LANCZOS)


def preprocess(image: Image.Image, info: ModelInfo) -> torch.Tensor:
    """A ``1x3xHxW`` tensor for one RGB image."""
    return model_transform(info)(image.convert("RGB")).unsqueeze(0)
