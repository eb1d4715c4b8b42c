"""The torch-free facts that ``weights list`` and ``weights fetch`` use equal what the installed libraries
report: torchvision's weights API, pytorchcv's model store and README, and ``torch.hub.get_dir()``."""
import re
from importlib.metadata import metadata
from pathlib import Path

import pytest
import torch.hub
import torchvision.models
from pytorchcv.models.common import model_store

from cbam_viz.models import fetch
from cbam_viz.models.locate import hub_checkpoints, hub_dir, read_manifest
from cbam_viz.models.published import (HASH_REGEX, LIBRARY_SOURCES, OTHER_SOURCES, PYTORCHCV, PYTORCHCV_REPO,
                                       TORCHVISION, StoreEntry, TorchvisionWeights)


def torchvision_reports(weights: str) -> TorchvisionWeights:
    """A weights enum member (``ResNet50_Weights.IMAGENET1K_V1``) as torchvision's weights API describes it."""
    enum_name, member = weights.split(".")
    w = getattr(getattr(torchvision.models, enum_name), member)
    metrics, transforms = w.meta["_metrics"]["ImageNet-1K"], w.transforms()
    docs = " ".join(re.sub(r"`([^`<]+?)\s*<([^>]+)>`_", r"\1 (\2)", w.meta["_docs"]).split())  # RST link -> text (URL)
    return TorchvisionWeights(w.url, w.meta["num_params"], metrics["acc@1"], metrics["acc@5"], transforms.resize_size[0],
                              transforms.crop_size[0], docs)


def pytorchcv_reports(name: str) -> StoreEntry:
    """A model as pytorchcv's model store (``model_metainfos.csv``) and README table (its package description) describe it."""
    error, sha1, tag = model_store.get_model_name_suffix_data(name)
    rows = model_store.load_csv(model_store.get_model_metainfos_file_path())
    row = dict(zip(rows[0], next(r for r in rows[1:] if r[0] == name)))
    log = f"/{name}-{error}-{sha1[:8]}.pth.log)"
    readme = metadata("pytorchcv").get_payload() or ""
    line = next((line for line in readme.splitlines() if line.startswith("|") and log in line), None)
    cells = [c.strip() for c in line.strip().strip("|").split("|")] if line else []
    top1 = float(cells[1]) if len(cells) > 2 and re.fullmatch(r"\d+\.\d+", cells[1]) else None
    return StoreEntry(row["model_caption"], int(row["net_weights"]), error, sha1, tag, top1)


@pytest.mark.parametrize("weights", sorted(TORCHVISION))
def test_the_torchvision_table_equals_torchvisions_weights_api(weights):
    assert TORCHVISION[weights] == torchvision_reports(weights)


@pytest.mark.parametrize("name", sorted(PYTORCHCV))
def test_the_pytorchcv_table_equals_its_model_store_and_readme(name):
    assert PYTORCHCV[name] == pytorchcv_reports(name)
    assert PYTORCHCV[name].top1_error is not None  # the README row was found: the test above compared a number


def test_file_names_and_checksums_are_derived_as_the_libraries_do():
    """The SHA-256 prefix as torch.hub reads it from the file name; pytorchcv's repository; every accepted
    torchvision file name of the manifest is described."""
    assert HASH_REGEX.pattern == torch.hub.HASH_REGEX.pattern and PYTORCHCV_REPO == model_store.imgclsmob_repo_url
    sources = [*LIBRARY_SOURCES.values(), *(s for others in OTHER_SOURCES.values() for s in others)]
    for source in sources:
        if source.sha256_prefix:
            assert source.sha256_prefix == torch.hub.HASH_REGEX.search(source.file_name).group(1)
    described = {s.file_name for s in sources}
    exact_names = [f for f in read_manifest()["models"]["imagenet-resnet50"]["files"] if "*" not in f]
    assert exact_names and set(exact_names) <= described


def test_weights_list_gives_the_libraries_numbers():
    """``weights list`` states the numbers the libraries report (read from them here) for the files it fetches."""
    listing = fetch.describe("imagenet")
    v1 = torchvision_reports("ResNet50_Weights.IMAGENET1K_V1")
    assert f"top-1 {v1.acc1}%, top-5 {v1.acc5}%" in listing and v1.url in listing
    cbam = pytorchcv_reports("cbam_resnet50")
    assert f"top-1 {100 - cbam.top1_error:.2f}%" in listing and cbam.sha1[:8] in listing


@pytest.mark.parametrize("env", [
    {},
    {"TORCH_HOME": "{tmp}/th"},
    {"TORCH_HOME": "~/th"},
    {"TORCH_HOME": ""},
    {"XDG_CACHE_HOME": "{tmp}/xdg"},
    {"XDG_CACHE_HOME": "~/xdg"},
    {"TORCH_HOME": "{tmp}/th", "XDG_CACHE_HOME": "{tmp}/xdg"},
])
def test_the_hub_dir_equals_torch_hub_get_dir(env, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value.format(tmp=tmp_path))
    assert hub_dir() == Path(torch.hub.get_dir())
    assert hub_checkpoints() == Path(torch.hub.get_dir()) / "checkpoints"
