"""Rendering: numpy overlays for the app, matplotlib figures for files."""
from .figure import caption, comparison_figure, last_block_per_stage
from .overlay import colorize, outline, overlay, resize_map, threshold_regions

__all__ = ["caption", "comparison_figure", "last_block_per_stage", "colorize", "outline", "overlay", "resize_map", "threshold_regions"]
