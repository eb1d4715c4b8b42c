"""The paper's Grad-CAM figure: one row per image, the input and every model's CAM, the prediction
under each panel, one shared colour bar; text is wrapped to the panels so that nothing overlaps."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.textpath import text_to_path  # noqa: E402

from ..explain import Explanation  # noqa: E402
from .figure import caption, colorbar  # noqa: E402
from .overlay import overlay  # noqa: E402

PANEL = 1.9  # inches per panel side
FONT = 8  # points
FORMATS = ("pdf", "svg", "png")
# Vector text: TrueType fonts embedded in PDF (not Type 3 glyph procedures), real <text> elements in SVG.
VECTOR_TEXT = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}


class GridRow(NamedTuple):
    """One row of the grid: its label, the image the overlays are drawn on, every model's explanation."""

    label: str
    image: np.ndarray
    results: Mapping[str, Explanation]


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


def cam_grid(rows: Sequence[GridRow], class_names: Sequence[str], titles: Mapping[str, str], method: str) -> Figure:
    """The figure: columns input + each model's CAM overlay (titled with the model's title), the predicted
    class and its probability under each CAM, the row's label left of its input, one colour bar for all."""
    if not rows:
        raise ValueError("the grid needs at least one image")
    roles = list(rows[0].results)
    columns = 1 + len(roles)
    width = PANEL * 72 * 0.95  # text may use 95% of a panel's width
    fig = plt.figure(figsize=(PANEL * columns + 1.2, (PANEL + 0.45) * len(rows) + 0.45), layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for i, row in enumerate(rows):
        axes[i, 0].imshow(row.image)
        axes[i, 0].set_ylabel(wrap(row.label, width), fontsize=FONT)
        for ax, role in zip(axes[i, 1:], roles):
            ax.imshow(overlay(row.image, row.results[role].cam))
            ax.set_xlabel(wrap(caption(row.results[role], class_names), width), fontsize=FONT)
    for ax, title in zip(axes[0], ["input", *(titles.get(role, role) for role in roles)]):
        ax.set_title(wrap(title, width, FONT + 1), fontsize=FONT + 1)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    label = wrap(f"{method}: each map scaled from its minimum (0) to its maximum (1)", PANEL * len(rows) * 72 * 0.9, FONT - 1)
    colorbar(fig, axes.ravel(), "jet", label, fraction=0.025, aspect=18 * len(rows))
    return fig


def figure_format(path: str | Path) -> str:
    """"pdf", "svg" or "png", from the file name; a ValueError naming the file otherwise."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{Path(path).name}: the figure is written as .pdf, .svg or .png, not {Path(path).suffix or 'no suffix'!r}")
    return fmt


def save_grid(fig: Figure, path: str | Path, dpi: int = 300) -> Path:
    """Write the figure as PDF, SVG (both with vector text) or PNG (``dpi``), chosen by the file suffix."""
    path = Path(path)
    fmt = figure_format(path)
    with matplotlib.rc_context(VECTOR_TEXT):
        fig.savefig(path, format=fmt, dpi=dpi)
    return path
