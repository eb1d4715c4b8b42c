"""Baseline and CBAM ResNets built on torchvision's ResNet.

With default options the baseline is exactly torchvision's architecture (same modules, same
state-dict keys). The CBAM variant adds ``cbam`` to every residual block, on the residual
branch after the last BN and before the addition, as in the authors' released code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as _TorchvisionResNet

from .attention import CBAM

DEPTHS: dict[int, tuple[type[nn.Module], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STEMS = ("imagenet", "small")
CBAM_OPTIONS = ("reduction", "channel_pools", "spatial", "spatial_kernel", "spatial_order", "arrangement")


@dataclass
class ModelInfo:
    """Everything needed to rebuild a model and feed it: stored in the project's checkpoints."""

    depth: int
    attention: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 1000
    class_names: list[str] | None = None
    input_size: int = 224
    resize: int | None = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelInfo":
        data = dict(data)
        data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
        return cls(**data)

    @property
    def title(self) -> str:
        return self.name or f"ResNet-{self.depth}" + (" + CBAM" if self.attention else "")


class _CBAMBlock:
    """Forward shared by both CBAM blocks: relu(cbam(residual(x)) + shortcut(x))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.cbam(self._residual(x)) + identity)


class CBAMBasicBlock(_CBAMBlock, BasicBlock):
    def __init__(self, *args: Any, cbam: dict[str, Any], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cbam = CBAM(self.bn2.num_features, **cbam)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class CBAMBottleneck(_CBAMBlock, Bottleneck):
    def __init__(self, *args: Any, cbam: dict[str, Any], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cbam = CBAM(self.bn3.num_features, **cbam)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class _BlockFactory:
    """Looks like a block class to torchvision's ``_make_layer`` and binds the CBAM options."""

    def __init__(self, block: type[nn.Module], cbam: dict[str, Any]):
        self.block, self.cbam, self.expansion = block, cbam, block.expansion

    def __call__(self, *args: Any, **kwargs: Any) -> nn.Module:
        return self.block(*args, cbam=self.cbam, **kwargs)


class ResNet(_TorchvisionResNet):
    """torchvision's ResNet with a width and stem option; ``info`` describes the model."""

    def __init__(self, block: Any, layers: list[int], num_classes: int = 1000, width: int = 64, stem: str = "imagenet"):
        nn.Module.__init__(self)
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {list(STEMS)}, got {stem!r}")
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        if stem == "imagenet":  # 7x7/2 conv + 3x3/2 max pool: stride 4
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        else:  # small inputs: 3x3/1 conv + 3x3/2 max pool: stride 2
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        self.info: ModelInfo


def build_resnet(depth: int, attention: str | None = None, num_classes: int = 1000, **options: Any) -> ResNet:
    """A baseline (``attention=None``) or CBAM (``attention="cbam"``) ResNet of depth 18/34/50/101.

    Options: ``width`` (64) and ``stem`` ("imagenet" or "small") for both; for CBAM also
    ``reduction`` (16), ``channel_pools`` (("avg", "max"); ("avg",) is SE-style),
    ``spatial`` (True; False is channel-only), ``spatial_kernel`` (7 or 3),
    ``spatial_order`` (("max", "avg") as released) and ``arrangement``
    ("channel_first", "spatial_first" or "parallel").
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
    if attention not in (None, "cbam"):
        raise ValueError(f"attention must be None or 'cbam', got {attention!r}")
    arch = {k: options.pop(k) for k in ("width", "stem") if k in options}
    unknown = set(options) - set(CBAM_OPTIONS)
    if unknown:
        raise TypeError(f"unknown option(s): {sorted(unknown)}")
    if options and attention is None:
        raise TypeError(f"CBAM option(s) {sorted(options)} need attention='cbam'")
    block, layers = DEPTHS[depth]
    if attention == "cbam":
        block = _BlockFactory(CBAMBasicBlock if block is BasicBlock else CBAMBottleneck, dict(options))
    model = ResNet(block, layers, num_classes=num_classes, **arch)
    model.info = ModelInfo(depth=depth, attention=attention, options={**arch, **options}, num_classes=num_classes)
    return model


def build_from_info(info: ModelInfo) -> ResNet:
    """Rebuild the architecture an :class:`ModelInfo` describes, with ``info`` attached."""
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in info.options.items()}
    model = build_resnet(info.depth, info.attention, info.num_classes, **options)
    model.info = info
    return model
