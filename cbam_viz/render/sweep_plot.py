"""Metric against depth: the plot of a layer sweep (:mod:`cbam_viz.evaluate.sweep`), one line per
model, thin lines for single training seeds and a thick one for their mean. Built without pyplot
(no global state, safe across threads)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

COLOURS = ("#4d4d4d", "#1b9e77", "#d95f02", "#7570b3")  # baseline first, then SE, CBAM, a fourth model


def depth_plot(layers: Sequence[str], panels: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], title: str) -> Figure:
    """``panels[method][metric][model]``: an array seeds x layers of mean scores; one row of panels
    per method, one column per metric."""
    methods = list(panels)
    metrics = list(next(iter(panels.values())))
    fig = Figure(figsize=(3.4 * len(metrics) + 1.2, 2.9 * len(methods) + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(len(methods), len(metrics), squeeze=False)
    x = np.arange(len(layers))
    for i, method in enumerate(methods):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            for colour, (model, values) in zip(COLOURS, panels[method][metric].items()):
                values = np.atleast_2d(values)
                if len(values) > 1:
                    for seed_values in values:
                        ax.plot(x, seed_values, color=colour, linewidth=0.8, alpha=0.45)
                ax.plot(x, values.mean(axis=0), color=colour, linewidth=2.2, marker="o", markersize=4, label=model)
            ax.set_xticks(x, layers, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{method}: {metric}", fontsize=10)
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig
