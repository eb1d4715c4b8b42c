"""The published ImageNet weight files: where each is served, how it is checked, what it scores and how
its images are prepared, read from the libraries (torchvision's weights API, pytorchcv's model store),
never copied here. Nothing here downloads.

torchvision's ``ResNet50_Weights.IMAGENET1K_V1`` is what ``weights fetch`` downloads and what the set
prefers: it is the plain recipe of the paper era, the fair partner of the 2018 attention models.
``IMAGENET1K_V2`` (a newer recipe, its own accuracy and preprocessing) is described as itself when it
is the file found.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .. import CLI

PAPER_ERA = "IMAGENET1K_V1"


class SourceError(RuntimeError):
    """A library's metadata that cannot describe a published file; one line."""


@dataclass(frozen=True)
class Source:
    """One published weight file: where it is, how it is packaged and checked, what it scores, and the
    preprocessing it was evaluated with (resize the short side, then center-crop)."""

    model_id: str  # the manifest entry it provides
    url: str
    file_name: str  # the file placed in the weights folder
    sha256_prefix: str | None = None
    sha1: str | None = None
    zipped: bool = False  # the URL is a zip archive holding file_name
    origin: str = ""
    accuracy: str = ""
    variant: str = ""  # torchvision's weights name (IMAGENET1K_V1), shown in the model's title
    resize: int = 256
    crop: int = 224
    note: str = ""  # a caveat worth showing wherever the source is (e.g. not the paper-era recipe)

    @property
    def preprocessing(self) -> str:
        return f"resize {self.resize}, center crop {self.crop}"


def torchvision_source(model_id: str, weights: str) -> Source:
    """A torchvision weights enum member, e.g. ``ResNet50_Weights.IMAGENET1K_V1``."""
    import torchvision.models
    from torch.hub import HASH_REGEX

    enum_name, member = weights.split(".")
    w = getattr(getattr(torchvision.models, enum_name), member)
    file_name = w.url.rsplit("/", 1)[1]
    match = HASH_REGEX.search(file_name)
    if not match:
        raise SourceError(f"{w.url}: no SHA-256 prefix in the file name, so the download could not be checked")
    metrics = w.meta["_metrics"]["ImageNet-1K"]
    transforms = w.transforms()
    docs = " ".join(re.sub(r"`([^`<]+?)\s*<([^>]+)>`_", r"\1 (\2)", w.meta["_docs"]).split())  # RST link -> text (URL)
    note = "" if member == PAPER_ERA else (
        f"{member} is not the paper-era recipe (torchvision: \"{docs}\"). The attention models' fair partner "
        f"is {PAPER_ERA}: `{CLI} weights fetch imagenet` downloads it, and it is preferred wherever both files are found.")
    return Source(model_id, w.url, file_name, sha256_prefix=match.group(1),
                  origin=f"torchvision {weights} ({w.meta['num_params']:,} parameters)",
                  accuracy=f"top-1 {metrics['acc@1']}%, top-5 {metrics['acc@5']}% (ImageNet-1K val, torchvision's metadata)",
                  variant=member, resize=transforms.resize_size[0], crop=transforms.crop_size[0], note=note)


@lru_cache(maxsize=None)
def pytorchcv_source(model_id: str, name: str) -> Source:
    """A pytorchcv model-store entry, e.g. ``seresnet50b``, named and located as ``model_store.get_model_file`` does."""
    try:
        from pytorchcv.models.common import model_store
    except ImportError:
        raise SourceError(f"reading pytorchcv's model store needs pytorchcv: pip install pytorchcv (for {name})") from None
    error, sha1, tag = model_store.get_model_name_suffix_data(name)
    rows = model_store.load_csv(model_store.get_model_metainfos_file_path())
    row = dict(zip(rows[0], next(r for r in rows[1:] if r[0] == name)))
    file_name = f"{name}-{error}-{sha1[:8]}.pth"
    top1_err = _pytorchcv_top1_error(file_name)
    top5_err = int(error) / 100
    top1 = f"top-1 {100 - top1_err:.2f}%, " if top1_err is not None else ""
    published = f"top-1/top-5 error {top1_err:.2f}% / {top5_err:.2f}%" if top1_err is not None else f"top-5 error {top5_err:.2f}%"
    return Source(model_id, f"{model_store.imgclsmob_repo_url}/releases/download/{tag}/{file_name}.zip", file_name,
                  sha1=sha1, zipped=True,
                  origin=f"pytorchcv {name} = {row['model_caption']} ({int(row['net_weights']):,} parameters, release {tag})",
                  accuracy=f"{top1}top-5 {100 - top5_err:.2f}% (ImageNet-1K val, 1 crop; pytorchcv's published {published})")


def _pytorchcv_top1_error(file_name: str) -> float | None:
    """The Top1 column of pytorchcv's README table (its package description), found by the file's log link."""
    from importlib.metadata import metadata

    text = metadata("pytorchcv").get_payload() or ""
    row = next((line for line in text.splitlines() if line.startswith("|") and f"/{file_name}.log)" in line), None)
    cells = [c.strip() for c in row.strip().strip("|").split("|")] if row else []
    return float(cells[1]) if len(cells) > 2 and re.fullmatch(r"\d+\.\d+", cells[1]) else None


# What `weights fetch` downloads for each manifest entry.
LIBRARY_SOURCES: dict[str, Callable[[], Source]] = {
    "imagenet-resnet50": lambda: torchvision_source("imagenet-resnet50", f"ResNet50_Weights.{PAPER_ERA}"),
    "imagenet-seresnet50b": lambda: pytorchcv_source("imagenet-seresnet50b", "seresnet50b"),
    "imagenet-resnet50-cbam": lambda: pytorchcv_source("imagenet-resnet50-cbam", "cbam_resnet50"),
}
# Other published files an entry accepts and describes when found (not downloaded).
OTHER_SOURCES: dict[str, list[Callable[[], Source]]] = {
    "imagenet-resnet50": [lambda: torchvision_source("imagenet-resnet50", "ResNet50_Weights.IMAGENET1K_V2")],
}


def source_of(path: Path, model_id: str | None = None) -> Source | None:
    """The published file that ``path`` is, by its name, among those entry ``model_id`` accepts (None:
    among every entry's); None if it is none of them."""
    ids = [model_id] if model_id is not None else list(LIBRARY_SOURCES)
    candidates = [make for i in ids if i in LIBRARY_SOURCES for make in (LIBRARY_SOURCES[i], *OTHER_SOURCES.get(i, []))]
    return next((s for make in candidates if (s := make()).file_name == path.name), None)
