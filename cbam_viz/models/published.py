"""The published ImageNet weight files: where each is served, how it is checked, what it scores and how
its images are prepared. Nothing here downloads, and nothing imports torch: ``weights list`` answers at once.

The facts are the libraries' own (torchvision's weights API, pytorchcv's model store and README), kept
in the two tables below; tests/test_published.py reads them from the installed libraries and asserts
that each table equals what they report, so a library upgrade that changes one fails there.

torchvision's ``ResNet50_Weights.IMAGENET1K_V1`` is what ``weights fetch`` downloads and what the set
prefers: it is the plain recipe of the paper era, the fair partner of the 2018 attention models.
``IMAGENET1K_V2`` (a newer recipe, its own accuracy and preprocessing) is described as itself when it
is the file found.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import CLI

PAPER_ERA = "IMAGENET1K_V1"
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub.HASH_REGEX: the SHA-256 prefix in a file name
PYTORCHCV_REPO = "https://github.com/osmr/imgclsmob"  # pytorchcv's model_store.imgclsmob_repo_url


@dataclass(frozen=True)
class TorchvisionWeights:
    """What torchvision's weights API says of one weights enum member."""

    url: str
    num_params: int  # meta["num_params"]
    acc1: float  # meta["_metrics"]["ImageNet-1K"]["acc@1"]
    acc5: float
    resize: int  # transforms().resize_size[0]
    crop: int  # transforms().crop_size[0]
    docs: str  # meta["_docs"], whitespace collapsed, its RST link written "text (URL)"


@dataclass(frozen=True)
class StoreEntry:
    """What pytorchcv says of one model: its ``model_metainfos.csv`` row and its README's top-1 error."""

    caption: str  # model_caption
    num_params: int  # net_weights
    error: str  # error_value: the top-5 error in hundredths of a percent, as in the file name
    sha1: str  # checksum of the .pth
    tag: str  # repo_release_tag
    top1_error: float | None  # the README table's Top1 column, None when the table has no row for the file


TORCHVISION: dict[str, TorchvisionWeights] = {
    "ResNet50_Weights.IMAGENET1K_V1": TorchvisionWeights(
        "https://download.pytorch.org/models/resnet50-0676ba61.pth", 25_557_032, 76.13, 92.862, 256, 224,
        "These weights reproduce closely the results of the paper using a simple training recipe."),
    "ResNet50_Weights.IMAGENET1K_V2": TorchvisionWeights(
        "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", 25_557_032, 80.858, 95.434, 232, 224,
        "These weights improve upon the results of the original paper by using TorchVision's new training recipe "
        "(https://pytorch.org/blog/how-to-train-state-of-the-art-models-using-torchvision-latest-primitives/)."),
}
PYTORCHCV: dict[str, StoreEntry] = {
    "seresnet50b": StoreEntry("SE-ResNet-50b", 28_088_024, "0539", "459e6871e944d1c7102ee9c055ea428b8d9a168c",
                              "v0.0.387", 20.79),
    "cbam_resnet50": StoreEntry("CBAM-ResNet-50", 28_089_624, "0505", "d8cf8488efb97afecd6b3287a3ca9fa093fc3127",
                                "v0.0.537", 20.17),
}


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
    """A torchvision weights enum member of :data:`TORCHVISION`, e.g. ``ResNet50_Weights.IMAGENET1K_V1``."""
    w = TORCHVISION[weights]
    member = weights.split(".")[1]
    file_name = w.url.rsplit("/", 1)[1]
    note = "" if member == PAPER_ERA else (
        f"{member} is not the paper-era recipe (torchvision: \"{w.docs}\"). The attention models' fair partner "
        f"is {PAPER_ERA}: `{CLI} weights fetch imagenet` downloads it, and it is preferred wherever both files are found.")
    return Source(model_id, w.url, file_name, sha256_prefix=HASH_REGEX.search(file_name).group(1),
                  origin=f"torchvision {weights} ({w.num_params:,} parameters)",
                  accuracy=f"top-1 {w.acc1}%, top-5 {w.acc5}% (ImageNet-1K val, torchvision's metadata)",
                  variant=member, resize=w.resize, crop=w.crop, note=note)


def pytorchcv_source(model_id: str, name: str) -> Source:
    """A pytorchcv model of :data:`PYTORCHCV`, e.g. ``seresnet50b``, named and located as its
    ``model_store.get_model_file`` does."""
    e = PYTORCHCV[name]
    file_name = f"{name}-{e.error}-{e.sha1[:8]}.pth"
    top5_err = int(e.error) / 100
    top1 = f"top-1 {100 - e.top1_error:.2f}%, " if e.top1_error is not None else ""
    published = (f"top-1/top-5 error {e.top1_error:.2f}% / {top5_err:.2f}%" if e.top1_error is not None
                 else f"top-5 error {top5_err:.2f}%")
    return Source(model_id, f"{PYTORCHCV_REPO}/releases/download/{e.tag}/{file_name}.zip", file_name,
                  sha1=e.sha1, zipped=True,
                  origin=f"pytorchcv {name} = {e.caption} ({e.num_params:,} parameters, release {e.tag})",
                  accuracy=f"{top1}top-5 {100 - top5_err:.2f}% (ImageNet-1K val, 1 crop; pytorchcv's published {published})")


# What `weights fetch` downloads for each manifest entry.
LIBRARY_SOURCES: dict[str, Source] = {
    "imagenet-resnet50": torchvision_source("imagenet-resnet50", f"ResNet50_Weights.{PAPER_ERA}"),
    "imagenet-seresnet50b": pytorchcv_source("imagenet-seresnet50b", "seresnet50b"),
    "imagenet-resnet50-cbam": pytorchcv_source("imagenet-resnet50-cbam", "cbam_resnet50"),
}
# Other published files an entry accepts and describes when found (not downloaded).
OTHER_SOURCES: dict[str, list[Source]] = {
    "imagenet-resnet50": [torchvision_source("imagenet-resnet50", "ResNet50_Weights.IMAGENET1K_V2")],
}


def source_of(path: Path, model_id: str | None = None) -> Source | None:
    """The published file that ``path`` is, by its name, among those entry ``model_id`` accepts (None:
    among every entry's); None if it is none of them."""
    ids = [model_id] if model_id is not None else list(LIBRARY_SOURCES)
    candidates = [s for i in ids if i in LIBRARY_SOURCES for s in (LIBRARY_SOURCES[i], *OTHER_SOURCES.get(i, []))]
    return next((s for s in candidates if s.file_name == path.name), None)
