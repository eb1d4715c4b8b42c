"""The side-by-side comparison figure (image, both CAM overlays, CBAM spatial attention per stage)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ..explain import Explanation  # noqa: E402
from .overlay import overlay  # noqa: E402


def last_block_per_stage(blocks: Sequence[str]) -> list[int]:
    """Indices of the last block of each stage ("layer1.2", "layer2.3", ...)."""
    last: dict[str, int] = {}
    for i, name in enumerate(blocks):
        last[name.split(".")[0]] = i
    return list(last.values())


def caption(result: Explanation, class_names: Sequence[str]) -> str:
    pred = result.prediction
    text = f"pred: {class_names[pred]} ({result.probs[pred]:.1%})"
    if result.target != pred:
        text += f"\nexplained: {class_names[result.target]} ({result.probs[result.target]:.1%})"
    return text


def comparison_figure(image: np.ndarray, results: Mapping[str, Explanation], class_names: Sequence[str],
                      titles: Mapping[str, str] | None = None) -> Image.Image:
    """Top row: the image and each model's CAM overlay; bottom row: spatial attention of the
    last block of each stage for every model that has CBAM blocks."""
    titles = titles or {}
    attention = [(label, r) for label, r in results.items() if r.spatial_attention]
    stages = max((len(last_block_per_stage(r.blocks)) for _, r in attention), default=0)
    cols = max(1 + len(results), stages)
    rows = 1 + len(attention)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("input", fontsize=10)
    for col, (label, r) in enumerate(results.items(), start=1):
        axes[0, col].imshow(overlay(image, r.cam))
        axes[0, col].set_title(f"{titles.get(label, label)} · {r.method}\n{caption(r, class_names)}", fontsize=9)
    for row, (label, r) in enumerate(attention, start=1):
        for col, k in enumerate(last_block_per_stage(r.blocks)):
            axes[row, col].imshow(overlay(image, r.spatial_attention[k], cmap="viridis"))
            axes[row, col].set_title(f"{titles.get(label, label)}: spatial attention {r.blocks[k]}", fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    picture = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy())
    plt.close(fig)
    return picture
