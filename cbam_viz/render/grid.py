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

from ..explain import Explanation  # noqa: E402
from ..fileio import atomic_write, figure_format  # noqa: E402
from .figure import FONT, NOTE_COLOR, PAD_INCHES, caption, colorbar, wrap  # noqa: E402
from .overlay import overlay  # noqa: E402

PANEL = 1.9  # inches per panel side
# Vector text: TrueType fonts embedded in PDF (not Type 3 glyph procedures), real <text> elements in SVG.
VECTOR_TEXT = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}


class GridRow(NamedTuple):
    """One row of the grid: its label, the image the overlays are drawn on, every model's explanation."""

    label: str
    image: np.ndarray
    results: Mapping[str, Explanation]


def cam_grid(rows: Sequence[GridRow], class_names: Sequence[str], titles: Mapping[str, str], method: str,
             note: str | None = None) -> Figure:
    """The figure: columns input + each model's CAM overlay (titled with the model's title), the predicted
    class and its probability under each CAM, the row's label left of its input, one colour bar for all;
    ``note`` (the out-of-domain warning) on top."""
    if not rows:
        raise ValueError("the grid needs at least one image")
    roles = list(rows[0].results)
    columns = 1 + len(roles)
    width = PANEL * 72 * 0.95  # text may use 95% of a panel's width
    note = wrap(note, (PANEL * columns + 1.0) * 72 * 0.95, FONT) if note else ""
    note_height = (note.count("\n") + 1) * FONT * 1.4 / 72 if note else 0  # inches, added to the figure's height
    fig = plt.figure(figsize=(PANEL * columns + 1.2, (PANEL + 0.45) * len(rows) + 0.45 + note_height), layout="constrained")
    if note:
        fig.suptitle(note, fontsize=FONT, color=NOTE_COLOR)
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


def save_grid(fig: Figure, path: str | Path, dpi: int = 300) -> Path:
    """Write the figure as PDF, SVG (both with vector text) or PNG (``dpi``), chosen by the file suffix."""
    path = Path(path)
    fmt = figure_format(path)
    with matplotlib.rc_context(VECTOR_TEXT):
        return atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=PAD_INCHES))
