"""Baseline, CBAM and SE ResNets built on torchvision's ResNet.

With default options the baseline is exactly torchvision's architecture (same modules, same
state-dict keys). The attention variants add ``cbam`` to every residual block, on the residual
branch after the last BN and before the addition, as in the CBAM authors' released code and in
SE-ResNet; for SE that module is a :class:`CBAM` with the :data:`SE` options.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as _TorchvisionResNet

from .attention import CBAM, SE

DEPTHS: dict[int, tuple[type[nn.Module], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STEMS = ("imagenet", "small")
ARCH_OPTIONS = ("width", "stem", "stride_in_1x1")
CBAM_OPTIONS = ("reduction", "channel_pools", "spatial", "spatial_kernel", "spatial_order", "arrangement")
SE_OPTIONS = ("reduction",)
# attention -> name in titles
ATTENTIONS = {"cbam": "CBAM", "se": "SE"}


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
        return self.name or f"ResNet-{self.depth}" + (f" + {ATTENTIONS.get(self.attention, self.attention)}" if self.attention else "")


class _CBAMBlock:
    """Forward shared by both attention blocks: relu(cbam(residual(x)) + shortcut(x))."""

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
    """Looks like a block class to torchvision's ``_make_layer`` and binds the CBAM module's options."""

    def __init__(self, block: type[nn.Module], cbam: dict[str, Any]):
        self.block, self.cbam, self.expansion = block, cbam, block.expansion

    def __call__(self, *args: Any, **kwargs: Any) -> nn.Module:
        return self.block(*args, cbam=self.cbam, **kwargs)


class ResNet(_TorchvisionResNet):
    """torchvision's ResNet with width, stem and stride options; ``info`` describes the model.

    ``stride_in_1x1=True`` moves each stage's downsampling stride from the bottleneck's 3x3 conv
    (torchvision, "ResNet v1.5") to its first 1x1 conv (the original ResNet, pytorchcv's
    ``resnet50`` / ``seresnet50``); the parameters are the same.
    """

    def __init__(
        self,
        block: Any,
        layers: list[int],
        num_classes: int = 1000,
        width: int = 64,
        stem: str = "imagenet",
        stride_in_1x1: bool = False,
    ):
        nn.Module.__init__(self)
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {list(STEMS)}, got {stem!r}")
        if stride_in_1x1 and block.expansion == 1:
            raise ValueError("stride_in_1x1 needs bottleneck blocks (depth 50 or 101)")
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
        if stride_in_1x1:
            for stage in (self.layer2, self.layer3, self.layer4):
                stage[0].conv1.stride, stage[0].conv2.stride = stage[0].conv2.stride, (1, 1)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        self.info: ModelInfo


def build_resnet(depth: int, attention: str | None = None, num_classes: int = 1000, **options: Any) -> ResNet:
    """A baseline (``attention=None``), CBAM (``"cbam"``) or SE (``"se"``) ResNet of depth 18/34/50/101.

    Options for all: ``width`` (64), ``stem`` ("imagenet" or "small") and ``stride_in_1x1``
    (False; depth 50/101 only, see :class:`ResNet`). For CBAM and SE: ``reduction`` (16).
    For CBAM only: ``channel_pools`` (("avg", "max")), ``spatial`` (True; False is
    channel-only), ``spatial_kernel`` (7 or 3), ``spatial_order`` (("max", "avg") as
    released) and ``arrangement`` ("channel_first", "spatial_first" or "parallel").
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
    if attention is not None and attention not in ATTENTIONS:
        raise ValueError(f"attention must be None or one of {list(ATTENTIONS)}, got {attention!r}")
    arch = {k: options.pop(k) for k in ARCH_OPTIONS if k in options}
    unknown = set(options) - set(CBAM_OPTIONS)
    if unknown:
        raise TypeError(f"unknown option(s): {sorted(unknown)}")
    if options and attention is None:
        raise TypeError(f"CBAM option(s) {sorted(options)} need attention='cbam'")
    if attention == "se" and set(options) - set(SE_OPTIONS):
        raise TypeError(f"option(s) {sorted(set(options) - set(SE_OPTIONS))} are CBAM-only; SE takes {list(SE_OPTIONS)}")
    block, layers = DEPTHS[depth]
    if attention is not None:
        gate = {**SE, **options} if attention == "se" else dict(options)
        block = _BlockFactory(CBAMBasicBlock if block is BasicBlock else CBAMBottleneck, gate)
    model = ResNet(block, layers, num_classes=num_classes, **arch)
    model.info = ModelInfo(depth=depth, attention=attention, options={**arch, **options}, num_classes=num_classes)
    return model


def build_from_info(info: ModelInfo) -> ResNet:
    """Rebuild the architecture an :class:`ModelInfo` describes, with ``info`` attached."""
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in info.options.items()}
    model = build_resnet(info.depth, info.attention, info.num_classes, **options)
    model.info = info
    return model
