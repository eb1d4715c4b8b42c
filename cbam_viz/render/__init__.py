"""Rendering: numpy overlays for the app, matplotlib figures for files."""
from .figure import caption, colorbar, comparison_figure, last_block_per_stage
from .grid import GridRow, cam_grid, figure_format, save_grid
from .overlay import colorize, outline, overlay, resize_map, threshold_regions

__all__ = ["GridRow", "cam_grid", "caption", "colorbar", "comparison_figure", "figure_format", "last_block_per_stage",
           "save_grid", "colorize", "outline", "overlay", "resize_map", "threshold_regions"]
