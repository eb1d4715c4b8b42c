"""Record CBAM attention maps on request: hooks exist only inside :func:`record_attention`."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from .attention import CBAM


@dataclass
class AttentionRecord:
    """Maps of every CBAM block, in network order, from the forward passes inside the context.

    ``channel[i]`` is (N, C) and ``spatial[i]`` is (N, H, W) for block ``blocks[i]``;
    ``spatial`` is empty for channel-only models.
    """

    blocks: list[str] = field(default_factory=list)
    channel: list[torch.Tensor] = field(default_factory=list)
    spatial: list[torch.Tensor] = field(default_factory=list)


def cbam_blocks(model: nn.Module) -> list[tuple[str, CBAM]]:
    """``(name, module)`` of every CBAM module, in network order ("layer1.0", ...)."""
    return [(name.removesuffix(".cbam"), m) for name, m in model.named_modules() if isinstance(m, CBAM)]


@contextmanager
def record_attention(model: nn.Module) -> Iterator[AttentionRecord]:
    """Yield an :class:`AttentionRecord` filled by the forward passes that this thread runs inside
    the block (other threads' forward passes on the same model are not recorded)."""
    record = AttentionRecord()
    owner = threading.get_ident()

    def keep(maps: list[torch.Tensor], value: torch.Tensor) -> None:
        if threading.get_ident() == owner:
            maps.append(value.detach())

    handles = []
    for name, cbam in cbam_blocks(model):
        record.blocks.append(name)
        handles.append(cbam.channel.register_forward_hook(lambda m, i, out: keep(record.channel, out[:, :, 0, 0])))
        if cbam.spatial is not None:
            handles.append(cbam.spatial.register_forward_hook(lambda m, i, out: keep(record.spatial, out[:, 0])))
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()
