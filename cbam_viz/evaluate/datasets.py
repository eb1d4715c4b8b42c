"""Datasets of annotated images for the evaluation: each item is a :class:`Target` at the model's
input size, or a :class:`Skipped` naming the image and why it cannot be scored."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..data import Difficulty, render_sample
from ..data.annotations import Annotation, AnnotationError, image_files, imagenet_wnids, mask_box, read_annotations
from ..images import ImageError, open_image
from ..models import ModelInfo
from ..models.sets import imagenet_classes
from ..models.transforms import annotation_geometry, crop_for_display
from .scoring import Target

Box = tuple[float, float, float, float]


class Skipped(NamedTuple):
    """An image left out of the evaluation, and why."""

    image: str
    reason: str


def fill_boxes(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """The union of boxes ``(x0, y0, x1, y1)`` (x1, y1 exclusive; fractional edges widen a box to whole
    pixels) as an HxW bool mask."""
    region = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        region[max(int(np.floor(y0)), 0):int(np.ceil(y1)), max(int(np.floor(x0)), 0):int(np.ceil(x1))] = True
    return region


def prepare(index: int, name: str, image: Image.Image, label: int, class_name: str, boxes: Sequence[Box],
            mask: np.ndarray | None, info: ModelInfo) -> Target | Skipped:
    """Map an image and its annotation (boxes, and a mask when there is one, in image pixels) onto the
    crop the model sees, with the model's own geometry; without a mask the boxes are the object.
    Skipped when the object is outside that crop."""
    h, w = image.height, image.width
    if mask is not None and mask.shape != (h, w):
        return Skipped(name, f"mask is {mask.shape[1]}x{mask.shape[0]} px, image {w}x{h}")
    annotation = {"boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), format="XYXY",
                                                    canvas_size=(h, w))}
    if mask is not None:
        annotation["mask"] = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(mask))[None])
    mapped = annotation_geometry(info)(annotation)
    size = (info.input_size, info.input_size)
    region = fill_boxes([b for b in mapped["boxes"].tolist() if b[2] > b[0] and b[3] > b[1]], size)
    object_mask = mapped["mask"][0].numpy().astype(bool) if mask is not None else region
    if not region.any() or not object_mask.any():
        return Skipped(name, "the annotated object is outside the part of the image the model sees")
    pixels = torch.from_numpy(np.asarray(crop_for_display(image, info)).copy()).permute(2, 0, 1)
    return Target(index, name, label, class_name, pixels, object_mask, region)


class GeneratedImages(Dataset):
    """Images ``0..n-1`` of a generated dataset (``render_sample``) with their ground truth."""

    def __init__(self, seed: int, n: int, info: ModelInfo, difficulty: Difficulty) -> None:
        self.seed, self.n, self.info, self.difficulty = seed, n, info, difficulty

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Target | Skipped:
        s = render_sample(self.seed, i, self.info.input_size, difficulty=self.difficulty)
        return prepare(i, f"{i:05d}", s.image, s.label, s.class_name, [s.box], s.mask, self.info)


def class_resolver(class_names: Sequence[str]) -> Callable[[str], int | None]:
    """Maps an annotated class to its index among a model's classes: by name (case-insensitive), or
    by ImageNet WordNet id (``n01440764``) for models with the 1000 ImageNet classes; None if unknown."""
    index = {c.lower(): i for i, c in reversed(list(enumerate(class_names)))}  # the first of equal names wins
    if len(class_names) == 1000 and list(class_names) == imagenet_classes():
        index.update({w.lower(): i for i, w in enumerate(imagenet_wnids())})
    return lambda name: index.get(name.strip().lower())


class _Files:
    """The image files of a folder, found by relative path, file name or (for names without an
    extension, as in ImageNet's validation XML) stem."""

    def __init__(self, images_dir: Path) -> None:
        self.files = image_files(images_dir)
        self.paths = set(self.files)
        self.by_name: dict[str, list[str]] = {}
        for f in self.files:
            for key in {Path(f).name, Path(f).stem}:
                self.by_name.setdefault(key, []).append(f)

    def find(self, file: str) -> str | None:
        if file in self.paths:
            return file
        candidates = self.by_name.get(Path(file).name, [])
        return candidates[0] if len(candidates) == 1 else None


class FolderImages(Dataset):
    """Annotated images of a folder (:func:`folder_dataset` builds it)."""

    def __init__(self, images_dir: Path, annotations: Sequence[Annotation], labels: Sequence[int], info: ModelInfo) -> None:
        self.images_dir, self.annotations, self.labels, self.info = images_dir, list(annotations), list(labels), info

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, i: int) -> Target | Skipped:
        a = self.annotations[i]
        try:
            image = open_image(self.images_dir / a.file)
            if a.size is not None and a.size != image.size:
                raise AnnotationError(f"the annotation is for a {a.size[0]}x{a.size[1]} image, "
                                      f"the file is {image.width}x{image.height}")
            mask = a.mask(image.width, image.height)
        except (ImageError, AnnotationError) as e:
            return Skipped(a.file, str(e))
        if mask is not None and not mask.any():
            return Skipped(a.file, f"the mask of {a.class_name!r} is empty")
        boxes = a.boxes or [mask_box(mask)]
        return prepare(i, a.file, image, self.labels[i], a.class_name, boxes, mask, self.info)


def folder_dataset(images_dir: Path, fmt: str, annotations_path: Path, class_names: Sequence[str],
                   info: ModelInfo) -> tuple[FolderImages, list[Skipped]]:
    """The annotated images of ``images_dir`` whose class the models know, in file order, and the
    skip list: unusable annotation entries, annotated files that are missing, unknown classes and
    images no annotation covers (masks beside their images do not count as images)."""
    if not images_dir.is_dir():
        raise AnnotationError(f"{images_dir}: no such folder")
    annotations, problems = read_annotations(fmt, annotations_path, images_dir)
    files = _Files(images_dir)
    skipped = [Skipped(*p) for p in problems]
    kept: list[Annotation] = []
    labels: list[int] = []
    used: set[str] = set()
    resolve = class_resolver(class_names)
    for a in sorted(annotations, key=lambda a: (a.file, a.class_name)):
        found = files.find(a.file)
        label = resolve(a.class_name)
        if found is None:
            skipped.append(Skipped(a.file, f"no such image in {images_dir.name}"))
        elif label is None:
            skipped.append(Skipped(found, f"class {a.class_name!r} is not one of the models' classes"))
            used.add(found)
        else:
            a.file = found
            kept.append(a)
            labels.append(label)
            used.add(found)
    masks = {Path(f).with_suffix("").as_posix() + "_mask" for f in used}  # `samples` writes x.png beside x_mask.png
    inside = annotations_path.resolve()
    annotation_files = (inside.relative_to(images_dir.resolve()).as_posix() + "/"
                        if inside.is_dir() and inside.is_relative_to(images_dir.resolve()) else None)
    skipped += [Skipped(f, "not covered by the annotations") for f in files.files
                if f not in used and Path(f).with_suffix("").as_posix() not in masks
                and not (annotation_files and f.startswith(annotation_files))]
    return FolderImages(images_dir, kept, labels, info), skipped
