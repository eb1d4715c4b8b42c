"""The side-by-side comparison figure (image, every model's CAM overlay, CBAM spatial attention per stage)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
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
    """The predicted class and its probability (and the explained class when it differs)."""
    pred = result.prediction
    text = f"pred: {class_names[pred]} ({result.probs[pred]:.1%})"
    if result.target != pred:
        text += f"\nexplained: {class_names[result.target]} ({result.probs[result.target]:.1%})"
    return text


def comparison_figure(image: np.ndarray, results: Mapping[str, Explanation], class_names: Sequence[str],
                      titles: Mapping[str, str] | None = None) -> Image.Image:
    """First row: the image and each model's CAM overlay, with a colour bar; then one row per model
    with spatial attention (CBAM): the last block of each stage, with a colour bar. Rows have their
    own column counts, so no panel is left empty."""
    titles = titles or {}
    attention = [(label, r) for label, r in results.items() if r.spatial_attention]
    columns = [1 + len(results)] + [len(last_block_per_stage(r.blocks)) for _, r in attention]
    fig = plt.figure(figsize=(3.1 * max(columns) + 1.0, 3.7 * len(columns)), layout="constrained")
    rows = fig.subfigures(len(columns), 1, squeeze=False)[:, 0]
    top = rows[0].subplots(1, columns[0], squeeze=False)[0]
    top[0].imshow(image)
    top[0].set_title("input", fontsize=9)
    for ax, (label, r) in zip(top[1:], results.items()):
        ax.imshow(overlay(image, r.cam))
        ax.set_title(f"{titles.get(label, label)}\n{r.method} of {r.target_layer}\n{caption(r, class_names)}", fontsize=8)
    colorbar(rows[0], top, "jet", "CAM, each map normalized: 0 = its minimum, 1 = its maximum")
    for row, (label, r) in zip(rows[1:], attention):
        axes = row.subplots(1, len(last_block_per_stage(r.blocks)), squeeze=False)[0]
        row.suptitle(f"{titles.get(label, label)}: spatial attention, last block of each stage", fontsize=9)
        for ax, k in zip(axes, last_block_per_stage(r.blocks)):
            ax.imshow(overlay(image, r.spatial_attention[k], cmap="viridis"))
            ax.set_title(r.blocks[k], fontsize=8)
        colorbar(row, axes, "viridis", "gate value: 0 = suppressed, 1 = kept")
    for ax in fig.axes:
        if ax.images:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.canvas.draw()
    picture = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy())
    plt.close(fig)
    return picture


def colorbar(figure: Any, axes: Sequence[Any], cmap: str, label: str, fraction: float = 0.02, aspect: float = 20) -> None:
    """One colour bar (0 to 1, ``cmap``) beside ``axes``, labelled with ``label``; ``aspect``: its length / width."""
    bar = figure.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=list(axes), fraction=fraction, aspect=aspect, pad=0.01)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=7)
