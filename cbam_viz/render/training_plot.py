"""Training curves of the demo set: held-out accuracy (in full, and zoomed on the range the kept epochs
lie in, where a plateau shows) and training loss per epoch, one colour per role, one line style per
training seed, a dot on each model's kept (best held-out) epoch. Built without pyplot (no global state,
safe across threads)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from ..fileio import atomic_write
from .sweep_plot import COLOURS

STYLES = ("-", "--", ":", "-.")


def plot_curves(rows: Sequence[Mapping], best: Mapping[tuple[str, str], int], out: Path) -> Path:
    """``rows``: one per set, role and epoch (``set``, ``role``, ``seed``, ``epoch``, ``val_accuracy``,
    ``train_loss``); ``best[(set, role)]``: the kept epoch. Writes a PNG to ``out``."""
    roles = list(dict.fromkeys(r["role"] for r in rows))
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    fig = Figure(figsize=(15, 4.2), dpi=110, layout="constrained")
    acc_ax, zoom_ax, loss_ax = fig.subplots(1, 3)
    kept_accuracies = []
    for (name, role) in dict.fromkeys((r["set"], r["role"]) for r in rows):
        curve = [r for r in rows if r["set"] == name and r["role"] == role]
        seed = curve[0]["seed"]
        style = dict(color=COLOURS[roles.index(role) % len(COLOURS)], linestyle=STYLES[seeds.index(seed) % len(STYLES)], linewidth=1.4)
        epochs = [r["epoch"] for r in curve]
        kept = next(r for r in curve if r["epoch"] == best[(name, role)])
        kept_accuracies.append(100 * kept["val_accuracy"])
        for ax in (acc_ax, zoom_ax):
            ax.plot(epochs, [100 * r["val_accuracy"] for r in curve], label=f"{role}, seed {seed}", **style)
            ax.plot(kept["epoch"], 100 * kept["val_accuracy"], "o", color=style["color"], markersize=5)
        loss_ax.plot(epochs, [r["train_loss"] for r in curve], **style)
    acc_ax.set(xlabel="epoch", ylabel="held-out accuracy (%)", title="Held-out accuracy (dot: the kept epoch)")
    floor, ceiling = max(0.0, min(kept_accuracies) - 5), min(100.0, max(kept_accuracies) + 1.5)
    first = min(r["epoch"] for r in rows if 100 * r["val_accuracy"] >= floor)
    zoom_ax.set(xlabel="epoch", ylabel="held-out accuracy (%)", title="The same, near the kept epochs",
                ylim=(floor, ceiling), xlim=(first - 0.5, max(r["epoch"] for r in rows) + 0.5))
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Training loss", yscale="log")
    for ax in (acc_ax, zoom_ax, loss_ax):
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=7, ncol=len(seeds))
    return atomic_write(out, lambda f: fig.savefig(f, format="png"))
