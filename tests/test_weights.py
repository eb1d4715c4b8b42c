"""Every checkpoint format, loaded for real, and every failure message."""
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from cbam_viz.explain import explain
from cbam_viz.models import WeightsError, build_resnet, load_checkpoint, load_weights, save_checkpoint, sets
from cbam_viz.models.fetch import describe
from cbam_viz.models.published import LIBRARY_SOURCES
from cbam_viz.ui.compare import _set_info
from published_files import (
    AUTHORS,
    COUNTER,
    TORCHVISION_V1,
    TORCHVISION_V2,
    authors_bytes,
    authors_resnet50,
    library_model,
    pytorchcv_pth_bytes,
    torchvision_v1_bytes,
    torchvision_v2_bytes,
    without_counters,
)
from published_files import randomize as _randomize


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_torchvision_state_dict(tmp_path):
    theirs = _randomize(torchvision.models.resnet50())
    torch.save(theirs.state_dict(), tmp_path / "resnet50-11ad3fa6.pth")
    ours = load_weights(build_resnet(50), tmp_path / "resnet50-11ad3fa6.pth")
    assert torch.equal(_logits(ours, X), _logits(theirs, X))


def test_authors_released_checkpoint_layout(tmp_path):
    authors = _randomize(authors_resnet50())
    parallel = nn.DataParallel(authors)  # on CPU it only adds the "module." prefix, as in the release
    state = parallel.state_dict()
    assert "module.layer1.0.cbam.ChannelGate.mlp.1.weight" in state
    assert "module.layer1.0.cbam.SpatialGate.spatial.conv.weight" in state
    path = tmp_path / "RESNET50_CBAM_new_name_wrap.pth"
    torch.save({"epoch": 90, "arch": "resnet", "state_dict": state, "best_prec1": 77.622}, path)
    ours = load_weights(build_resnet(50, "cbam"), path)
    assert torch.allclose(_logits(ours, X), _logits(authors, X), atol=1e-5)


def test_authors_weights_need_the_released_pool_order(tmp_path):
    authors = _randomize(authors_resnet50())
    path = tmp_path / "cbam.pth"
    torch.save({"state_dict": nn.DataParallel(authors).state_dict()}, path)
    paper_order = load_weights(build_resnet(50, "cbam", spatial_order=("avg", "max")), path)
    assert not torch.allclose(_logits(paper_order, X), _logits(authors, X), atol=1e-3)


def test_pytorchcv_cbam_resnet50(tmp_path):
    """pytorchcv puts the stride in the 3x3 conv and stacks [max, mean], like the authors' code."""
    from pytorchcv.models.cbamresnet import cbam_resnet50

    theirs = _randomize(cbam_resnet50(pretrained=False))
    torch.save(theirs.state_dict(), tmp_path / "cbam_resnet50.pth")
    ours = load_weights(build_resnet(50, "cbam"), tmp_path / "cbam_resnet50.pth")
    assert ours.layer2[0].conv2.stride == (2, 2) and theirs.features.stage2.unit1.body.conv2.conv.stride == (2, 2)
    x = torch.nn.functional.interpolate(X, size=224)  # pytorchcv ends in a fixed 7x7 average pool
    assert torch.allclose(_logits(ours, x), _logits(theirs, x), rtol=1e-4, atol=1e-4)


def _max_relative_difference(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> float:
    """In float64: random ResNet-50s are ill-conditioned enough that float32 rounding alone moves
    logits by ~1e-3 of their scale, which would hide small errors."""
    a, b = _logits(ours.double(), x.double()), _logits(theirs.double(), x.double())
    return float((a - b).abs().max() / b.abs().max())


def _pytorchcv(name: str) -> nn.Module:
    from pytorchcv.models import resnet, seresnet

    return _randomize(getattr(seresnet if name.startswith("se") else resnet, name)(pretrained=False))


@pytest.mark.parametrize("name, depth, attention, stride_in_1x1", [
    ("resnet50b", 50, None, False),
    ("seresnet50b", 50, "se", False),
    ("resnet50", 50, None, True),
    ("seresnet50", 50, "se", True),
    ("seresnet18", 18, "se", False),
])
def test_pytorchcv_resnet_and_seresnet(tmp_path, name, depth, attention, stride_in_1x1):
    """The "b" variants stride in the 3x3 conv (torchvision); the others need stride_in_1x1=True."""
    theirs = _pytorchcv(name)
    assert any(".se.conv1.weight" in k for k in theirs.state_dict()) == (attention == "se")
    torch.save(theirs.state_dict(), tmp_path / f"{name}.pth")
    options = {"stride_in_1x1": True} if stride_in_1x1 else {}
    ours = load_weights(build_resnet(depth, attention, **options), tmp_path / f"{name}.pth")
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    x = torch.nn.functional.interpolate(X, size=224)  # pytorchcv ends in a fixed 7x7 average pool
    assert _max_relative_difference(ours, theirs, x) < 1e-9


def test_stride_placement_is_not_in_the_file(tmp_path):
    """seresnet50 loads into the default (3x3-stride) layout too, and then computes something else."""
    theirs = _pytorchcv("seresnet50")
    torch.save(theirs.state_dict(), tmp_path / "seresnet50.pth")
    wrong = load_weights(build_resnet(50, "se"), tmp_path / "seresnet50.pth")
    assert _max_relative_difference(wrong, theirs, torch.nn.functional.interpolate(X, size=224)) > 1e-2


@pytest.mark.parametrize("name, attention, declared", [
    ("seresnet18", "cbam", "ResNet + SE"),
    ("seresnet18", None, "ResNet + SE"),
    ("resnet18", "se", "baseline ResNet"),
])
def test_pytorchcv_file_into_another_attention_names_both(tmp_path, name, attention, declared):
    path = tmp_path / f"{name}.pth"
    torch.save(_pytorchcv(name).state_dict(), path)
    model = build_resnet(18, attention)
    expected = "se" if name.startswith("se") else None
    with pytest.raises(WeightsError) as e:
        load_weights(model, path)
    assert str(e.value) == (f"{path}: holds {declared} weights (pytorchcv layout) but the model is "
                            f"{model.info.title}; build it with attention={expected!r}")


def test_pytorchcv_cbam_file_into_se_model(tmp_path):
    from pytorchcv.models.cbamresnet import cbam_resnet50

    path = tmp_path / "cbam_resnet50.pth"
    torch.save(cbam_resnet50(pretrained=False).state_dict(), path)
    with pytest.raises(WeightsError, match=r"holds ResNet \+ CBAM weights \(pytorchcv layout\) but the model is "
                                           r"ResNet-50 \+ SE; build it with attention='cbam'$"):
        load_weights(build_resnet(50, "se"), path)


def test_own_format_se_round_trip_and_attention_check(tmp_path):
    model = _randomize(build_resnet(18, "se", width=8, stem="small", num_classes=3, reduction=4))
    path = save_checkpoint(model, tmp_path / "se.pt")
    loaded = load_checkpoint(path)
    assert loaded.info == model.info and loaded.info.attention == "se" and loaded.info.title == "ResNet-18 + SE"
    assert torch.equal(_logits(loaded, X[:, :, :32, :32]), _logits(model, X[:, :, :32, :32]))
    # A channel-only CBAM with average pooling has the same keys; the file's declared attention refuses it.
    twin = build_resnet(18, "cbam", width=8, stem="small", num_classes=3, reduction=4, channel_pools=("avg",), spatial=False)
    assert twin.state_dict().keys() == model.state_dict().keys()
    with pytest.raises(WeightsError, match=r"se\.pt: holds ResNet \+ SE weights \(cbam-viz layout\) but the model is ResNet-18 \+ CBAM"):
        load_weights(twin, path)


def test_own_format_round_trip(tmp_path):
    model = _randomize(build_resnet(18, "cbam", width=8, stem="small", num_classes=3, reduction=4))
    model.info.class_names = ["a", "b", "c"]
    model.info.input_size, model.info.resize = 32, None
    path = save_checkpoint(model, tmp_path / "m.pt", accuracy=0.5)
    loaded = load_checkpoint(path)
    assert loaded.info == model.info
    assert not loaded.training
    assert torch.equal(_logits(loaded, X[:, :, :32, :32]), _logits(model, X[:, :, :32, :32]))
    assert torch.load(path, weights_only=True)["accuracy"] == 0.5
    # The same file also loads into a matching architecture built by hand.
    load_weights(build_resnet(18, "cbam", width=8, stem="small", num_classes=3, reduction=4), path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello, I am text")
    with pytest.raises(WeightsError, match=r"notes\.pth: not a PyTorch checkpoint") as e:
        load_weights(build_resnet(18), path)
    assert "\n" not in str(e.value)


def test_truncated_and_empty_files(tmp_path):
    full = tmp_path / "full.pth"
    torch.save(build_resnet(18).state_dict(), full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"cut\.pth: not a PyTorch checkpoint \((truncated or corrupt|unreadable pickle)"):
        load_weights(build_resnet(18), cut)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match=r"empty\.pth: not a PyTorch checkpoint \(empty"):
        load_weights(build_resnet(18), empty)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"nope\.pth: file not found"):
        load_weights(build_resnet(18), tmp_path / "nope.pth")


class Sneaky:
    def __reduce__(self):
        return (print, ("this would run",))


def test_code_carrying_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Sneaky()}, path, pickle_module=pickle)
    with pytest.raises(WeightsError, match=r"evil\.pth: contains Python objects beyond tensors; refusing"):
        load_weights(build_resnet(18), path)


def test_wrong_architecture_lists_keys_and_counts(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(build_resnet(18).state_dict(), path)
    with pytest.raises(WeightsError) as e:
        load_weights(build_resnet(50, "cbam"), path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: does not fit ResNet-50 + CBAM:")
    assert "309 missing (" in msg and "shape mismatches" in msg and "..." in msg  # BN counters may be absent: not counted
    assert "\n" not in msg
    torch.save(build_resnet(50, "cbam").state_dict(), path)
    with pytest.raises(WeightsError, match=r"r18\.pth: does not fit ResNet-18: \d+ unexpected \(layer1\.0\.conv3\.weight"):
        load_weights(build_resnet(18), path)


def test_shape_mismatch_names_the_tensor(tmp_path):
    path = tmp_path / "ten.pth"
    torch.save(build_resnet(18, num_classes=10).state_dict(), path)
    with pytest.raises(WeightsError, match=r"2 shape mismatches \(file vs model: fc.weight \[10, 512\] vs \[1000, 512\], fc.bias"):
        load_weights(build_resnet(18), path)


def test_baseline_weights_into_cbam_model_name_the_missing_cbam_keys(tmp_path):
    path = tmp_path / "base.pth"
    torch.save(build_resnet(18).state_dict(), path)
    with pytest.raises(WeightsError, match=r"72 missing \(layer1\.0\.cbam\.channel\.fc1\.weight"):
        load_weights(build_resnet(18, "cbam"), path)


def test_weights_only_file_is_not_a_full_checkpoint(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(build_resnet(18).state_dict(), path)
    with pytest.raises(WeightsError, match="not a cbam-viz checkpoint"):
        load_checkpoint(path)


def test_randomized_models_depend_on_their_input():
    """Guards the equality tests above: the logits must differ between the two inputs."""
    logits = _logits(_randomize(authors_resnet50()), X)
    assert (logits[0] - logits[1]).abs().max() > 1e-2


# --- The files as published, loaded through the paths a user takes, against the libraries' own models ---
X64 = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
FILE_NAMES = {model_id: source.file_name for model_id, source in LIBRARY_SOURCES.items()}
SE_FILE, CBAM_FILE = FILE_NAMES["imagenet-seresnet50b"], FILE_NAMES["imagenet-resnet50-cbam"]


def _float64_logits(model: nn.Module) -> torch.Tensor:
    if hasattr(model, "features"):  # pytorchcv: its fixed 7x7 final pool is the global average at 224 px;
        model.features.final_pool = nn.AvgPool2d(2)  # at 64 px (a 2x2 map) this is that same average
    with torch.no_grad():
        return model.double().eval()(X64)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Each library's model built once: its files, written the way the publisher wrote them, and its float64 logits."""
    folder = tmp_path_factory.mktemp("published")
    writers = {"torchvision-v1": {TORCHVISION_V1: torchvision_v1_bytes},
               "torchvision-v2": {TORCHVISION_V2: torchvision_v2_bytes},
               "seresnet50b": {SE_FILE: pytorchcv_pth_bytes}, "cbam_resnet50": {CBAM_FILE: pytorchcv_pth_bytes},
               "authors": {AUTHORS: lambda m: authors_bytes(m, counters=False),
                           f"counters-{AUTHORS}": lambda m: authors_bytes(m, counters=True)}}
    logits, files = {}, {}
    for name, shapes in writers.items():
        model = library_model(name)
        for file_name, write in shapes.items():
            files[file_name] = folder / name / file_name
            files[file_name].parent.mkdir(exist_ok=True)
            files[file_name].write_bytes(write(model))
        logits[name] = _float64_logits(model)
    return SimpleNamespace(files=files, logits=logits)


@pytest.fixture
def user_places(tmp_path, monkeypatch):
    """An empty weights folder and torch hub cache, no model variables: where a user puts files."""
    places = SimpleNamespace(weights=tmp_path / "weights", hub=tmp_path / "torch" / "hub" / "checkpoints", other=tmp_path / "other")
    for folder in vars(places).values():
        folder.mkdir(parents=True)
    monkeypatch.setenv("CBAM_VIZ_WEIGHTS", str(places.weights))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("CBAM_VIZ_RESNET50", "CBAM_VIZ_SERESNET50", "CBAM_VIZ_RESNET50_CBAM"):
        monkeypatch.delenv(var, raising=False)
    return places


def _place(published, file_name: str, folder, as_name: str | None = None):
    target = folder / (as_name or file_name)
    target.symlink_to(published.files[file_name])
    return target


def _relative_difference(model: nn.Module, reference: torch.Tensor) -> float:
    with torch.no_grad():
        ours = model.double().eval()(X64)
    return float((ours - reference).abs().max() / reference.abs().max())


def test_published_files_in_the_weights_folder_load_and_equal_the_libraries(published, user_places):
    """What `weights fetch` leaves: torchvision's V1 (legacy, no BN counters) and pytorchcv's unzipped .pth files."""
    for name in (TORCHVISION_V1, SE_FILE, CBAM_FILE):
        _place(published, name, user_places.weights)
    model_set = sets.load_set("imagenet", device="cpu")
    for role, library in (("baseline", "torchvision-v1"), ("se", "seresnet50b"), ("cbam", "cbam_resnet50")):
        difference = _relative_difference(model_set.models[role], published.logits[library])
        print(f"{role} {library}: float64 max relative difference {difference:.2e}")
        assert difference <= 1e-8, (role, difference)
    assert model_set.sources["baseline"].variant == "IMAGENET1K_V1" and model_set.models["baseline"].info.resize == 256
    assert model_set.models["baseline"].info.title == "ResNet-50 (torchvision) IMAGENET1K_V1"
    assert set(model_set.sources) == {"baseline", "se", "cbam"}


def test_v2_in_the_hub_cache_and_files_named_by_variables(published, user_places, monkeypatch):
    """torchvision's V2 (what `resnet50(weights="DEFAULT")` leaves in the hub cache) is described as V2; the
    authors' DataParallel dict without counters and pytorchcv's file load from their variables."""
    from torchvision.models import ResNet50_Weights

    _place(published, TORCHVISION_V2, user_places.hub)
    monkeypatch.setenv("CBAM_VIZ_SERESNET50", str(_place(published, SE_FILE, user_places.other)))
    monkeypatch.setenv("CBAM_VIZ_RESNET50_CBAM", str(_place(published, AUTHORS, user_places.other)))
    model_set = sets.load_set("imagenet", device="cpu")
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 255, (300, 420, 3), dtype=np.uint8))
    maps = explain(model_set.models, photo)  # on the V2 baseline's crop (232): SE and CBAM (256) saw only its centre
    assert {r.cam.shape for r in maps.values()} == {(224, 224)} and maps["baseline"].cam[:, :10].max() > 0
    assert maps["se"].cam[:, :10].max() == maps["cbam"].cam[:, :10].max() == maps["cbam"].spatial_attention[0][:, 0].max() == 0
    for role, library in (("baseline", "torchvision-v2"), ("se", "seresnet50b"), ("cbam", "authors")):
        difference = _relative_difference(model_set.models[role], published.logits[library])
        print(f"{role} {library}: float64 max relative difference {difference:.2e}")
        assert difference <= 1e-8, (role, difference)

    v2 = ResNet50_Weights.IMAGENET1K_V2
    baseline = model_set.models["baseline"].info
    assert baseline.title == "ResNet-50 (torchvision) IMAGENET1K_V2"
    assert (baseline.resize, baseline.input_size) == (v2.transforms().resize_size[0], v2.transforms().crop_size[0]) == (232, 224)
    assert model_set.models["se"].info.resize == 256
    accuracy = f"top-1 {v2.meta['_metrics']['ImageNet-1K']['acc@1']}%"
    listing = describe("imagenet")
    info = _set_info(SimpleNamespace(sets={"imagenet": model_set}, unavailable={}, device="cpu"), "imagenet")
    for text in (listing, info):
        assert "IMAGENET1K_V2" in text and accuracy in text and "resize 232, center crop 224" in text
        assert "not the paper-era recipe" in text and "top-1 76.13%" not in text
    assert f"cbam: ResNet-50 + CBAM — {AUTHORS}: not one of the libraries' published files" in listing
    assert "*CBAM:* ResNet-50 + CBAM from a file that is not in torchvision's or pytorchcv's metadata" in info


def test_files_given_on_the_command_line(published):
    """`explain --cbam FILE`: the authors' dict as saved by torch >= 0.4.1 (counters present); `--baseline
    FILE`: torchvision's V2 is described and fed as V2 there too."""
    model = sets.load_model_file(published.files[f"counters-{AUTHORS}"], "cbam", device="cpu")
    difference = _relative_difference(model, published.logits["authors"])
    print(f"cbam authors (with counters): float64 max relative difference {difference:.2e}")
    assert difference <= 1e-8
    v2 = sets.load_model_file(published.files[TORCHVISION_V2], None, device="cpu")
    assert (v2.info.title, v2.info.resize, v2.info.input_size) == ("ResNet-50 IMAGENET1K_V2", 232, 224)


@pytest.mark.parametrize("v1_in, v2_in", [("weights", "weights"), ("hub", "hub"), ("hub", "models"), ("other", "weights")])
def test_v1_is_preferred_wherever_both_are_found(user_places, tmp_path, monkeypatch, v1_in, v2_in):
    """V1 before V2 in one folder and across folders (`other`: a folder `weights fetch --dir` registered)."""
    from cbam_viz.models.fetch import register_dir

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    folders = {**vars(user_places), "models": models_dir}
    register_dir(user_places.other)
    (folders[v1_in] / TORCHVISION_V1).write_bytes(b"v1")
    (folders[v2_in] / TORCHVISION_V2).write_bytes(b"v2")
    entry = sets.read_manifest()["models"]["imagenet-resnet50"]
    assert sets.external_path(entry, models_dir) == folders[v1_in] / TORCHVISION_V1
    (folders[v1_in] / TORCHVISION_V1).unlink()
    assert sets.external_path(entry, models_dir) == folders[v2_in] / TORCHVISION_V2


def test_only_the_bn_counters_may_be_missing(tmp_path):
    """Without counters a file loads (BatchNorm starts them at 0); any other missing key is still refused."""
    model = _randomize(build_resnet(18))
    state = without_counters(model.state_dict())
    torch.save(state, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    target = build_resnet(18)
    for name, buffer in target.named_buffers():
        buffer.fill_(5) if name.endswith(COUNTER) else None
    loaded = load_weights(target, tmp_path / "old.pth")
    assert all(int(v) == 0 for k, v in loaded.state_dict().items() if k.endswith(COUNTER))
    assert torch.equal(_logits(loaded, X), _logits(model, X))
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(WeightsError, match=r"cut\.pth: does not fit ResNet-18: 1 missing \(layer1\.0\.conv1\.weight\)$"):
        load_weights(build_resnet(18), tmp_path / "cut.pth")
