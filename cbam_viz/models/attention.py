"""CBAM gates (Woo et al., ECCV 2018), as in the authors' released code, and SE as a CBAM option.

Each gate returns its attention map; :class:`CBAM` multiplies the maps onto the features.
Returning the maps (rather than the gated features) lets a forward hook on a gate read the
map directly, so recording attention costs nothing when nobody listens.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

POOLS = ("avg", "max")
ARRANGEMENTS = ("channel_first", "spatial_first", "parallel")
# Squeeze-and-Excitation (Hu et al., CVPR 2018) is CBAM's channel gate with average pooling only
# and no spatial gate: ``CBAM(channels, reduction, **SE)`` is an SE block.
SE = {"channel_pools": ("avg",), "spatial": False}


def _check(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {list(allowed)}, got {value!r}")


class ChannelGate(nn.Module):
    """Mc = sigmoid(sum over pools p of MLP(p(F))), one MLP shared by all pools.

    ``pools=("avg",)`` is the SE-style gate of the paper's ablation, ``("avg", "max")`` CBAM's.
    """

    def __init__(self, channels: int, reduction: int = 16, pools: Sequence[str] = POOLS):
        super().__init__()
        if not pools:
            raise ValueError("the channel gate needs at least one pool")
        for pool in pools:
            _check(pool, POOLS, "channel pool")
        self.pools = tuple(pools)
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = 0
        for pool in self.pools:
            pooled = x.mean(dim=(2, 3)) if pool == "avg" else x.amax(dim=(2, 3))
            logits = logits + self.fc2(F.relu(self.fc1(pooled)))
        return torch.sigmoid(logits)[:, :, None, None]


class SpatialGate(nn.Module):
    """Ms = sigmoid(BN(conv_k([pool_c(F) for pool in order]))), pooling across channels.

    The released checkpoint stacks ``("max", "avg")``; the paper's text says avg first.
    Trained weights only work with the order they were trained with.
    """

    def __init__(self, kernel_size: int = 7, order: Sequence[str] = ("max", "avg")):
        super().__init__()
        if kernel_size not in (3, 7):
            raise ValueError(f"spatial kernel must be 3 or 7, got {kernel_size}")
        if sorted(order) != sorted(POOLS):
            raise ValueError(f"spatial pool order must be a permutation of {POOLS}, got {order}")
        self.order = tuple(order)
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        # eps and momentum of the authors' BasicConv.
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [x.amax(dim=1, keepdim=True) if p == "max" else x.mean(dim=1, keepdim=True) for p in self.order]
        return torch.sigmoid(self.bn(self.conv(torch.cat(pooled, dim=1))))


class CBAM(nn.Module):
    """Channel gate, then (optionally) spatial gate, each multiplied onto the features.

    ``arrangement``: "channel_first" (the paper's CBAM), "spatial_first", or "parallel"
    (both gates read the block input F; output F * Mc(F) * Ms(F)).
    ``spatial=False`` gives the channel-only ablation.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        channel_pools: Sequence[str] = POOLS,
        spatial: bool = True,
        spatial_kernel: int = 7,
        spatial_order: Sequence[str] = ("max", "avg"),
        arrangement: str = "channel_first",
    ):
        super().__init__()
        _check(arrangement, ARRANGEMENTS, "arrangement")
        self.arrangement = arrangement
        self.channel = ChannelGate(channels, reduction, channel_pools)
        self.spatial = SpatialGate(spatial_kernel, spatial_order) if spatial else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial is None:
            return x * self.channel(x)
        if self.arrangement == "channel_first":
            x = x * self.channel(x)
            return x * self.spatial(x)
        if self.arrangement == "spatial_first":
            x = x * self.spatial(x)
            return x * self.channel(x)
        return x * self.channel(x) * self.spatial(x)


def authors_init(model: nn.Module) -> nn.Module:
    """The CBAM authors' initialisation of the spatial gates (``MODELS/model_resnet.py``): every
    spatial gate's BatchNorm starts with weight 0 and bias 0, so each gate outputs sigmoid(0) = 0.5
    everywhere until training moves it. torchvision's rule, used elsewhere here, starts BN weights at 1.
    The demo set's plateau recipe uses this rule (``train --init authors``, the default); its 4-epoch
    predecessor and the shipped ablation table used torchvision's (``--init torchvision``)."""
    for module in model.modules():
        if isinstance(module, SpatialGate):
            nn.init.zeros_(module.bn.weight)
            nn.init.zeros_(module.bn.bias)
    return model
