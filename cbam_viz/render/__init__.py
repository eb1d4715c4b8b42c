"""Rendering: numpy overlays for the app, matplotlib figures for files.

The overlay functions import at once (one of them shares its module's name); the figures, which need
the explanation engine, on first use (:mod:`cbam_viz.lazy`)."""
from ..lazy import lazy_exports
from .overlay import colorize, outline, overlay, resize_map, threshold_regions

_EXPORTS = {
    **dict.fromkeys(["caption", "colorbar", "comparison_figure", "last_block_per_stage"], "figure"),
    **dict.fromkeys(["GridRow", "cam_grid", "figure_format", "save_grid"], "grid"),
}
__all__ = [*_EXPORTS, "colorize", "outline", "overlay", "resize_map", "threshold_regions"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
