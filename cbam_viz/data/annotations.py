"""Readers for the annotations of a folder of labelled images: CSV boxes (with optional
``<stem>_mask.png`` masks: the layout ``python -m cbam_viz samples`` writes), Pascal-VOC XML (the format
of ImageNet's validation boxes), COCO instances JSON (boxes, polygons and RLE masks) and a folder of
mask PNGs with a class per image.

Every reader returns one :class:`Annotation` per (image, class) -- the boxes and masks of that class
-- and a list of ``(name, reason)`` problems for entries it could not use; only an annotation file
that cannot be read at all raises :class:`AnnotationError`. Boxes are ``(x0, y0, x1, y1)`` in image
pixels, x1/y1 exclusive (the convention of :mod:`cbam_viz.data.metrics`).
"""
from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

FORMATS = ("csv", "voc", "coco", "masks")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}
CSV_COLUMNS = ("file", "class", "x0", "y0", "x1", "y1")
WNIDS_FILE = Path(__file__).with_name("imagenet_wnids.txt")
Box = tuple[float, float, float, float]
Problem = tuple[str, str]


class AnnotationError(ValueError):
    """Annotations that cannot be read at all (missing file, wrong columns, not JSON); one line."""


@lru_cache(maxsize=1)
def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1K WordNet ids in class-index order (source noted in ``imagenet_wnids.txt``)."""
    return [line for line in WNIDS_FILE.read_text().split("\n") if line and not line.startswith("#")]


@dataclass
class Annotation:
    """The objects of one class in one image: its boxes and, when annotated, its mask (a PNG file or
    COCO segmentations). ``size`` is the (width, height) the annotation declares, if any."""

    file: str  # the image, relative to the images folder
    class_name: str  # as annotated: a class name (or an ImageNet WordNet id)
    boxes: list[Box] = field(default_factory=list)
    mask_file: Path | None = None  # nonzero pixels = the object
    segmentations: list[Any] = field(default_factory=list)  # COCO polygons or RLE, one per instance
    size: tuple[int, int] | None = None

    def mask(self, width: int, height: int) -> np.ndarray | None:
        """The object mask (HxW bool), or None when only boxes are annotated; AnnotationError if unreadable."""
        if self.mask_file is not None:
            try:
                with Image.open(self.mask_file) as image:
                    mask = np.asarray(image.convert("L")) > 0
            except (OSError, UnidentifiedImageError, ValueError) as e:
                raise AnnotationError(f"mask {self.mask_file.name} cannot be read ({str(e).splitlines()[0][:80]})") from None
            return mask
        if self.segmentations:
            from pycocotools import mask as coco_mask

            out = np.zeros((height, width), dtype=bool)
            for segmentation in self.segmentations:
                rle = coco_mask.frPyObjects(segmentation, height, width) if isinstance(segmentation, list) or \
                    isinstance(segmentation.get("counts"), list) else segmentation
                out |= coco_mask.decode(coco_mask.merge(rle) if isinstance(rle, list) else rle).astype(bool)
            return out
        return None


def mask_box(mask: np.ndarray) -> Box:
    """The tight box around a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def image_files(images_dir: Path) -> list[str]:
    """Every image file under ``images_dir`` (recursively), relative, sorted."""
    return sorted(p.relative_to(images_dir).as_posix() for p in images_dir.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _box(values: Sequence[str | float]) -> Box:
    x0, y0, x1, y1 = (float(v) for v in values)
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise ValueError(f"box ({', '.join(str(v) for v in values)}) is empty or not finite")
    return x0, y0, x1, y1


def _group(entries: list[tuple[str, str, Box]]) -> dict[tuple[str, str], list[Box]]:
    grouped: dict[tuple[str, str], list[Box]] = {}
    for file, class_name, box in entries:
        grouped.setdefault((file, class_name), []).append(box)
    return grouped


def read_csv(path: Path, images_dir: Path) -> tuple[list[Annotation], list[Problem]]:
    """``file,class,x0,y0,x1,y1`` rows (more columns are ignored; several rows per image allowed). A
    ``<stem>_mask.png`` beside an image annotated with a single class is that class's mask."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise AnnotationError(f"{path.name}: missing column(s) {', '.join(missing)}; need {','.join(CSV_COLUMNS)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise AnnotationError(f"{path}: cannot be read as CSV ({e})") from None
    entries, problems = [], []
    for line, row in enumerate(rows, start=2):
        try:
            entries.append((row["file"], row["class"], _box([row[c] for c in CSV_COLUMNS[2:]])))
        except (TypeError, ValueError) as e:
            problems.append((f"{path.name} line {line}", f"bad row: {e}"))
    grouped = _group(entries)
    classes_per_file: dict[str, int] = {}
    for file, _ in grouped:
        classes_per_file[file] = classes_per_file.get(file, 0) + 1
    annotations = []
    for (file, class_name), boxes in grouped.items():
        mask = (images_dir / file).with_name(f"{Path(file).stem}_mask.png")
        use_mask = classes_per_file[file] == 1 and mask.is_file()
        annotations.append(Annotation(file, class_name, boxes, mask if use_mask else None))
    return annotations, problems


def _text(node: ET.Element, tag: str) -> str:
    found = node.find(tag)
    if found is None or found.text is None:
        raise ValueError(f"no <{tag}>")
    return found.text.strip()


def read_voc(path: Path) -> tuple[list[Annotation], list[Problem]]:
    """Pascal-VOC XML files (a folder of them, or one file): ``<filename>`` (without an extension,
    as in ImageNet's validation boxes, it matches any image of that stem; missing, the XML's own
    stem), ``<size>`` and ``<object>`` with ``<name>`` and ``<bndbox>``. VOC coordinates are 1-based
    and inclusive: ``xmin`` 1 is the first pixel column."""
    files = sorted(path.rglob("*.xml")) if path.is_dir() else [path]
    if not files:
        raise AnnotationError(f"{path}: no .xml files")
    annotations, problems = [], []
    for xml in files:
        try:
            root = ET.parse(xml).getroot()
            file = root.findtext("filename", "").strip() or xml.stem
            size = root.find("size")
            declared = (int(_text(size, "width")), int(_text(size, "height"))) if size is not None else None
            entries = []
            for obj in root.iter("object"):
                box = obj.find("bndbox")
                if box is None:
                    raise ValueError("an <object> has no <bndbox>")
                xmin, ymin, xmax, ymax = (float(_text(box, t)) for t in ("xmin", "ymin", "xmax", "ymax"))
                entries.append((file, _text(obj, "name"), _box([xmin - 1, ymin - 1, xmax, ymax])))
        except (ET.ParseError, ValueError, OSError) as e:
            problems.append((xml.name, f"unusable VOC XML: {e}"))
            continue
        if not entries:
            problems.append((xml.name, "no <object>"))
        for (name, class_name), boxes in _group(entries).items():
            annotations.append(Annotation(name, class_name, boxes, size=declared))
    return annotations, problems


def read_coco(path: Path) -> tuple[list[Annotation], list[Problem]]:
    """A COCO instances JSON: ``images`` (id, file_name, width, height), ``categories`` (id, name) and
    ``annotations`` (image_id, category_id, bbox ``[x, y, w, h]``, segmentation as polygons or RLE)."""
    try:
        data = json.loads(path.read_text())
        images = {im["id"]: im for im in data["images"]}
        categories = {c["id"]: c["name"] for c in data["categories"]}
        instances = data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AnnotationError(f"{path}: not a COCO instances file ({type(e).__name__}: {e})") from None
    grouped: dict[tuple[Any, Any], Annotation] = {}
    problems = []
    for n, instance in enumerate(instances):
        try:
            image = images[instance["image_id"]]
            class_name = categories[instance["category_id"]]
            x, y, w, h = instance["bbox"]
            box = _box([x, y, x + w, y + h])
        except (KeyError, TypeError, ValueError) as e:
            problems.append((f"{path.name} annotation {instance.get('id', n) if isinstance(instance, dict) else n}",
                             f"unusable instance ({type(e).__name__}: {e})"))
            continue
        key = (instance["image_id"], instance["category_id"])
        if key not in grouped:
            grouped[key] = Annotation(image["file_name"], class_name, size=(int(image["width"]), int(image["height"])))
        grouped[key].boxes.append(box)
        if instance.get("segmentation"):
            grouped[key].segmentations.append(instance["segmentation"])
    return list(grouped.values()), problems


def read_masks(path: Path) -> tuple[list[Annotation], list[Problem]]:
    """A folder of mask PNGs (``<image stem>.png`` or ``<image stem>_mask.png``; nonzero = the object)
    with ``classes.csv`` (columns ``file,class``) naming each image and its class."""
    classes = path / "classes.csv"
    try:
        with open(classes, newline="") as f:
            reader = csv.DictReader(f)
            if not {"file", "class"} <= set(reader.fieldnames or []):
                raise AnnotationError(f"{classes}: need the columns file,class")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise AnnotationError(f"{classes}: cannot be read ({e}); the masks format needs a classes.csv with file,class") from None
    annotations, problems = [], []
    for row in rows:
        stem = Path(row["file"]).stem
        mask = next((m for m in (path / f"{stem}.png", path / f"{stem}_mask.png") if m.is_file()), None)
        if mask is None:
            problems.append((row["file"], f"no mask {stem}.png or {stem}_mask.png in {path.name}"))
            continue
        annotations.append(Annotation(row["file"], row["class"], mask_file=mask))
    return annotations, problems


def read_annotations(fmt: str, path: Path, images_dir: Path) -> tuple[list[Annotation], list[Problem]]:
    """Read ``path`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise AnnotationError(f"unknown annotation format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not path.exists():
        raise AnnotationError(f"{path}: no such file or folder")
    if fmt == "csv":
        return read_csv(path, images_dir)
    if fmt == "voc":
        return read_voc(path)
    if fmt == "coco":
        return read_coco(path)
    if not path.is_dir():
        raise AnnotationError(f"{path}: the masks format needs a folder (mask PNGs and classes.csv)")
    return read_masks(path)
