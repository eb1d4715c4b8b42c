"""Datasets of annotated images for the evaluation: each item is a :class:`Target` at the model's
input size, or a :class:`Skipped` naming the image and why it cannot be scored."""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..data import Difficulty, render_sample
from ..models import ModelInfo
from ..models.transforms import annotation_geometry, crop_for_display
from .scoring import Target

Box = tuple[float, float, float, float]


class Skipped(NamedTuple):
    """An image left out of the evaluation, and why."""

    image: str
    reason: str


def fill_boxes(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """The union of boxes ``(x0, y0, x1, y1)`` (x1, y1 exclusive; fractional edges widen the box to whole pixels) as an HxW bool mask."""
    region = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        region[max(int(np.floor(y0)), 0):int(np.ceil(y1)), max(int(np.floor(x0)), 0):int(np.ceil(x1))] = True
    return region


def prepare(index: int, name: str, image: Image.Image, label: int, class_name: str, boxes: Sequence[Box],
            mask: np.ndarray | None, info: ModelInfo) -> Target | Skipped:
    """Map an image and its annotation (boxes, and a mask when there is one, in image pixels) onto the
    crop the model sees, with the model's own geometry; skipped when the object is outside that crop."""
    h, w = image.height, image.width
    if mask is not None and mask.shape != (h, w):
        return Skipped(name, f"mask is {mask.shape[1]}x{mask.shape[0]} px, image {w}x{h}")
    object_mask = mask if mask is not None else fill_boxes(boxes, (h, w))
    mapped = annotation_geometry(info)({
        "mask": tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(object_mask))[None]),
        "boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), format="XYXY", canvas_size=(h, w)),
    })
    size = (info.input_size, info.input_size)
    kept = [tuple(b) for b in mapped["boxes"].tolist() if b[2] > b[0] and b[3] > b[1]]
    object_mask = mapped["mask"][0].numpy().astype(bool)
    if not kept or not object_mask.any():
        return Skipped(name, "the annotated object is outside the part of the image the model sees")
    pixels = torch.from_numpy(np.asarray(crop_for_display(image, info)).copy()).permute(2, 0, 1)
    return Target(index, name, label, class_name, pixels, object_mask, fill_boxes(kept, size))


class GeneratedImages(Dataset):
    """Images ``0..n-1`` of a generated dataset (``render_sample``) with their ground truth."""

    def __init__(self, seed: int, n: int, info: ModelInfo, difficulty: Difficulty) -> None:
        self.seed, self.n, self.info, self.difficulty = seed, n, info, difficulty

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Target | Skipped:
        s = render_sample(self.seed, i, self.info.input_size, difficulty=self.difficulty)
        return prepare(i, f"{i:05d}", s.image, s.label, s.class_name, [s.box], s.mask, self.info)
