"""Every checkpoint format, loaded for real, and every failure message."""
import pickle

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

from cbam_viz.models import (
    WeightsError,
    build_resnet,
    find_torchvision_resnet50,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights *and* BN statistics, so that any misplaced tensor changes the logits.

    Convolutions keep their (random, Kaiming) initialisation so that signals propagate.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or t.ndim == 4:
                continue
            if name.endswith("running_var") or (t.ndim == 1 and name.endswith("weight")):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
    return model.eval()


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


# --- An independent transcription of the CBAM authors' released modules (MODELS/cbam.py) ---
class _BasicConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x):
        return self.bn(self.conv(x))


class _AuthorsChannelGate(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c, c // r), nn.ReLU(), nn.Linear(c // r, c))

    def forward(self, x):
        avg = self.mlp(nn.functional.avg_pool2d(x, (x.size(2), x.size(3))))
        mx = self.mlp(nn.functional.max_pool2d(x, (x.size(2), x.size(3))))
        return x * torch.sigmoid(avg + mx)[:, :, None, None].expand_as(x)


class _AuthorsSpatialGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.spatial = _BasicConv()

    def forward(self, x):
        compressed = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)
        return x * torch.sigmoid(self.spatial(compressed))


class _AuthorsCBAM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ChannelGate, self.SpatialGate = _AuthorsChannelGate(c), _AuthorsSpatialGate()

    def forward(self, x):
        return self.SpatialGate(self.ChannelGate(x))


class _AuthorsBottleneck(Bottleneck):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cbam = _AuthorsCBAM(self.bn3.num_features)

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out = self.cbam(out)
        return self.relu(out + residual)


def _authors_resnet50() -> nn.Module:
    return torchvision.models.ResNet(_AuthorsBottleneck, [3, 4, 6, 3])


X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_torchvision_state_dict(tmp_path):
    theirs = _randomize(torchvision.models.resnet50())
    torch.save(theirs.state_dict(), tmp_path / "resnet50-11ad3fa6.pth")
    ours = load_weights(build_resnet(50), tmp_path / "resnet50-11ad3fa6.pth")
    assert torch.equal(_logits(ours, X), _logits(theirs, X))


def test_authors_released_checkpoint_layout(tmp_path):
    authors = _randomize(_authors_resnet50())
    parallel = nn.DataParallel(authors)  # on CPU it only adds the "module." prefix, as in the release
    state = parallel.state_dict()
    assert "module.layer1.0.cbam.ChannelGate.mlp.1.weight" in state
    assert "module.layer1.0.cbam.SpatialGate.spatial.conv.weight" in state
    path = tmp_path / "RESNET50_CBAM_new_name_wrap.pth"
    torch.save({"epoch": 90, "arch": "resnet", "state_dict": state, "best_prec1": 77.622}, path)
    ours = load_weights(build_resnet(50, "cbam"), path)
    assert torch.allclose(_logits(ours, X), _logits(authors, X), atol=1e-5)


def test_authors_weights_need_the_released_pool_order(tmp_path):
    authors = _randomize(_authors_resnet50())
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
    assert "358 missing (" in msg and "shape mismatches" in msg and "..." in msg
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
    with pytest.raises(WeightsError, match=r"80 missing \(layer1\.0\.cbam\.channel\.fc1\.weight"):
        load_weights(build_resnet(18, "cbam"), path)


def test_weights_only_file_is_not_a_full_checkpoint(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(build_resnet(18).state_dict(), path)
    with pytest.raises(WeightsError, match="not a cbam-viz checkpoint"):
        load_checkpoint(path)


def test_torch_hub_cache_lookup_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert find_torchvision_resnet50() is None
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    target = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    target.write_bytes(b"x")
    assert find_torchvision_resnet50() == target


def test_randomized_models_depend_on_their_input():
    """Guards the equality tests above: the logits must differ between the two inputs."""
    logits = _logits(_randomize(_authors_resnet50()), X)
    assert (logits[0] - logits[1]).abs().max() > 1e-2
