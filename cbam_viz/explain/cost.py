"""What an explanation costs before it runs: forward passes per image for a method and layer, and the seconds one
pass takes for a model on its device (measured, since CPUs and GPUs differ by orders of magnitude)."""
from __future__ import annotations

import time

import torch
from torch import nn

from .methods import GRADIENT_FREE

GRADIENT_PASSES = 3  # a forward pass and the backward pass from the target layer, counted as two forward passes


def forward_passes(model: nn.Module, method: str, layer: str) -> int:
    """Forward-pass equivalents per image: Score-CAM runs one per channel of the target block's output after the
    first; EigenCAM one; gradient methods :data:`GRADIENT_PASSES`."""
    if method == "scorecam":
        block = model.get_submodule(layer)
        last = getattr(block, "conv3", None) or block.conv2  # torchvision's Bottleneck / BasicBlock
        return 1 + last.out_channels
    return 1 if method in GRADIENT_FREE else GRADIENT_PASSES


def seconds_per_pass(model: nn.Module, batch: int = 2, repeats: int = 1) -> float:
    """Seconds of one forward pass per image for ``model`` at its input size, on its device, batched as Score-CAM
    batches (the best of ``repeats`` timed runs after a warm-up)."""
    device = next(model.parameters()).device
    size = model.info.input_size
    x = torch.zeros(batch, 3, size, size, device=device)
    best = float("inf")
    with torch.inference_mode():
        for run in range(repeats + 1):
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if run:
                best = min(best, time.perf_counter() - start)
    return best / batch
