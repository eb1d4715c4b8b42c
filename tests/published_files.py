"""Weight files written the way their publishers wrote them, from the libraries' own architectures with
random weights (fixed seeds): the shapes a user really brings.

- torchvision's ``resnet50-0676ba61.pth`` (IMAGENET1K_V1), a re-save of the 2017 file: a plain dict (no
  ``_metadata``) of 267 tensors, **no** ``num_batches_tracked``, legacy (non-zip) serialization.
- torchvision's ``resnet50-11ad3fa6.pth`` (IMAGENET1K_V2): today's ``state_dict()`` (320 entries with the
  counters, ``_metadata``), zip serialization.
- pytorchcv's release: ``NAME-ERR-SHA1PREFIX.pth`` (a ``state_dict()`` with counters, legacy
  serialization) inside ``NAME-ERR-SHA1PREFIX.pth.zip``, checked by the SHA-1 of the ``.pth``.
- the CBAM authors' ``RESNET50_CBAM_new_name_wrap.pth``: ``{'epoch', 'arch', 'state_dict', 'best_prec1',
  'optimizer'}`` saved from ``DataParallel`` (``module.`` keys) in the legacy format, with or without the
  counters (torch 0.4 era), the optimizer holding SGD momentum buffers.
"""
from __future__ import annotations

import hashlib
import io
import zipfile

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

COUNTER = ".num_batches_tracked"
TORCHVISION_V1 = "resnet50-0676ba61.pth"
TORCHVISION_V2 = "resnet50-11ad3fa6.pth"
AUTHORS = "RESNET50_CBAM_new_name_wrap.pth"


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
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


def authors_resnet50() -> nn.Module:
    return torchvision.models.ResNet(_AuthorsBottleneck, [3, 4, 6, 3])


def _pytorchcv(name: str) -> nn.Module:
    from pytorchcv.models.cbamresnet import cbam_resnet50
    from pytorchcv.models.seresnet import seresnet50b

    return {"seresnet50b": seresnet50b, "cbam_resnet50": cbam_resnet50}[name](pretrained=False)


BUILDERS = {
    "torchvision-v1": torchvision.models.resnet50,
    "torchvision-v2": torchvision.models.resnet50,
    "seresnet50b": lambda: _pytorchcv("seresnet50b"),
    "cbam_resnet50": lambda: _pytorchcv("cbam_resnet50"),
    "authors": authors_resnet50,
}


def library_model(name: str) -> nn.Module:
    """The library's own architecture (pytorchcv's with ``pretrained=False``), every weight random from a
    seed of its own (the caller's RNG untouched), in eval mode."""
    seed = list(BUILDERS).index(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return randomize(BUILDERS[name](), seed)


def _save(obj: object, legacy: bool) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def without_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A plain dict (no ``_metadata``) without BatchNorm's ``num_batches_tracked``."""
    return {k: v for k, v in state.items() if not k.endswith(COUNTER)}


def torchvision_v1_bytes(model: nn.Module) -> bytes:
    state = without_counters(model.state_dict())
    assert len(state) == 267 and not hasattr(state, "_metadata")
    return _save(state, legacy=True)


def torchvision_v2_bytes(model: nn.Module) -> bytes:
    state = model.state_dict()
    assert len(state) == 320 and hasattr(state, "_metadata")
    return _save(state, legacy=False)


def pytorchcv_pth_bytes(model: nn.Module) -> bytes:
    return _save(model.state_dict(), legacy=True)


def release_zip(pth_name: str, pth: bytes) -> bytes:
    """pytorchcv's release asset: ``NAME.pth.zip`` holding ``NAME.pth``. Stored, not deflated: random
    weights do not compress, and deflating 100 MB costs seconds (test_fetch's small archives are deflated)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(pth_name, pth)
    return archive.getvalue()


def authors_bytes(model: nn.Module, counters: bool) -> bytes:
    state = nn.DataParallel(model).state_dict()  # on CPU it only adds the "module." prefix, as in the release
    state = state if counters else without_counters(state)
    params = list(model.parameters())
    ids = [140_000_000_000_000 + 8 * i for i in range(len(params))]  # torch 0.4 keyed the state by id(param)
    optimizer = {"state": {i: {"momentum_buffer": torch.zeros_like(p)} for i, p in zip(ids, params)},
                 "param_groups": [{"lr": 1e-4, "momentum": 0.9, "dampening": 0, "weight_decay": 1e-4,
                                   "nesterov": False, "params": ids}]}
    return _save({"epoch": 90, "arch": "resnet", "state_dict": state, "best_prec1": 77.622, "optimizer": optimizer}, legacy=True)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
