"""The side-by-side comparison figure (image, every model's CAM overlay, CBAM spatial attention per stage)."""
from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.textpath import text_to_path  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ..explain import Explanation  # noqa: E402
from .overlay import overlay  # noqa: E402

FONT = 8  # points
NOTE_COLOR = "#a11d1d"  # the out-of-domain warning
PAD_INCHES = 0.1  # white margin around everything drawn, titles included


def last_block_per_stage(blocks: Sequence[str]) -> list[int]:
    """Indices of the last block of each stage ("layer1.2", "layer2.3", ...)."""
    last: dict[str, int] = {}
    for i, name in enumerate(blocks):
        last[name.split(".")[0]] = i
    return list(last.values())


def wrap(text: str, width_pt: float, size: float = FONT) -> str:
    """``text`` broken into lines no wider than ``width_pt`` points when set at ``size`` points (measured
    with the default font's advance widths); words longer than a line are split."""
    prop = FontProperties(size=size)

    def fits(line: str) -> bool:
        return text_to_path.get_text_width_height_descent(line, prop, ismath=False)[0] <= width_pt

    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if fits(candidate):
                line = candidate
                continue
            if line:
                lines.append(line)
            while not fits(word) and len(word) > 1:
                low, high = 1, len(word) - 1  # the longest prefix that fits (at least one character)
                while low < high:
                    middle = (low + high + 1) // 2
                    low, high = (middle, high) if fits(word[:middle]) else (low, middle - 1)
                lines.append(word[:low])
                word = word[low:]
            line = word
        lines.append(line)
    return "\n".join(lines)


def caption(result: Explanation, class_names: Sequence[str]) -> str:
    """The predicted class and its probability (and the explained class when it differs)."""
    pred = result.prediction
    text = f"pred: {class_names[pred]} ({result.probs[pred]:.1%})"
    if result.target != pred:
        text += f"\nexplained: {class_names[result.target]} ({result.probs[result.target]:.1%})"
    return text


def comparison_plot(image: np.ndarray, results: Mapping[str, Explanation], class_names: Sequence[str],
                    titles: Mapping[str, str] | None = None, note: str | None = None) -> Figure:
    """First row: the image and each model's CAM overlay, with a colour bar; then one row per model
    with spatial attention (CBAM): the last block of each stage, with a colour bar. Rows have their
    own column counts, so no panel is left empty. ``note`` (the out-of-domain warning) goes on top."""
    titles = titles or {}
    attention = [(label, r) for label, r in results.items() if r.spatial_attention]
    columns = [1 + len(results)] + [len(last_block_per_stage(r.blocks)) for _, r in attention]
    width = 3.1 * max(columns) + 1.0
    note = wrap(note, width * 72 * 0.9, FONT + 1) if note else ""
    note_height = (note.count("\n") + 1) * (FONT + 1) * 1.4 / 72 if note else 0  # inches, added to the height
    fig = plt.figure(figsize=(width, 3.7 * len(columns) + note_height), layout="constrained")
    if note:
        fig.suptitle(note, fontsize=FONT + 1, color=NOTE_COLOR)
    rows = fig.subfigures(len(columns), 1, squeeze=False)[:, 0]
    top = rows[0].subplots(1, columns[0], squeeze=False)[0]
    top[0].imshow(image)
    top[0].set_title("input", fontsize=FONT + 1)
    panel = 3.1 * 72 * 0.95  # text may use 95% of a panel's width
    for ax, (label, r) in zip(top[1:], results.items()):
        ax.imshow(overlay(image, r.cam))
        ax.set_title(wrap(f"{titles.get(label, label)}\n{r.method} of {r.target_layer}\n{caption(r, class_names)}", panel),
                     fontsize=FONT)
    colorbar(rows[0], top, "jet", "CAM, each map normalized: 0 = its minimum, 1 = its maximum")
    for row, (label, r) in zip(rows[1:], attention):
        axes = row.subplots(1, len(last_block_per_stage(r.blocks)), squeeze=False)[0]
        row.suptitle(wrap(f"{titles.get(label, label)}: spatial attention, last block of each stage", width * 72 * 0.9,
                          FONT + 1), fontsize=FONT + 1)
        for ax, k in zip(axes, last_block_per_stage(r.blocks)):
            ax.imshow(overlay(image, r.spatial_attention[k], cmap="viridis"))
            ax.set_title(r.blocks[k], fontsize=FONT)
        colorbar(row, axes, "viridis", "gate value: 0 = suppressed, 1 = kept")
    for ax in fig.axes:
        if ax.images:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def to_picture(fig: Figure) -> Image.Image:
    """The figure as an RGB image cut to everything drawn (titles included) plus a white margin; closes it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight", pad_inches=PAD_INCHES, facecolor="white")
    finally:
        plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def comparison_figure(image: np.ndarray, results: Mapping[str, Explanation], class_names: Sequence[str],
                      titles: Mapping[str, str] | None = None, note: str | None = None) -> Image.Image:
    """:func:`comparison_plot` as an image: every title lies inside it."""
    return to_picture(comparison_plot(image, results, class_names, titles, note))


def colorbar(figure: Any, axes: Sequence[Any], cmap: str, label: str, fraction: float = 0.02, aspect: float = 20) -> None:
    """One colour bar (0 to 1, ``cmap``) beside ``axes``, labelled with ``label``; ``aspect``: its length / width."""
    bar = figure.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=list(axes), fraction=fraction, aspect=aspect, pad=0.01)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=7)
