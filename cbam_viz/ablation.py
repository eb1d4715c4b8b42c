"""The paper's ablations (Woo et al., 2018, tables 1-3) re-run on the generated task.

Every variant is trained with the demo set's recipe (same data, seed and batch order; usually a
smaller budget, stated in the table) and scored on held-out generated images: top-1 accuracy and
Grad-CAM localization at the last block (pointing game, energy in the target box), each with a
95% interval (Wilson for proportions, bootstrap for means). Groups follow the paper:

- channel pooling: channel attention only, average vs max vs both pools (average only is SE);
- spatial kernel: channel (both pools) followed by spatial attention with a 3x3 or 7x7 conv;
- arrangement: channel-first (CBAM), spatial-first, or both gates in parallel.

The baseline heads every group, and CBAM (channel-first, 7x7) appears in the last two.
"""
from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np
import torch

from .data import DIFFICULTIES, energy_pointing_game, mean_ci, pointing_game, render_sample
from .explain import explain_batch
from .fileio import atomic_write_text
from .models import load_checkpoint
from .training import Recipe, check_names, train, training_data

EVAL_SEED = 3  # held-out images, as `evaluate` uses


@dataclass(frozen=True)
class Variant:
    title: str
    attention: str | None
    options: dict


VARIANTS: dict[str, Variant] = {
    "baseline": Variant("baseline (no attention)", None, {}),
    "channel-avg": Variant("channel: avg pool (SE)", "cbam", {"channel_pools": ("avg",), "spatial": False}),
    "channel-max": Variant("channel: max pool", "cbam", {"channel_pools": ("max",), "spatial": False}),
    "channel-avgmax": Variant("channel: avg + max pool", "cbam", {"channel_pools": ("avg", "max"), "spatial": False}),
    "spatial-k3": Variant("channel + spatial, 3x3 conv", "cbam", {"spatial_kernel": 3}),
    "cbam": Variant("channel + spatial, 7x7 conv (CBAM)", "cbam", {}),
    "spatial-first": Variant("spatial first, then channel", "cbam", {"arrangement": "spatial_first"}),
    "parallel": Variant("channel and spatial in parallel", "cbam", {"arrangement": "parallel"}),
}
GROUPS: dict[str, tuple[str, ...]] = {
    "Channel pooling (channel attention only)": ("baseline", "channel-avg", "channel-max", "channel-avgmax"),
    "Spatial kernel (after channel attention with both pools)": ("baseline", "channel-avgmax", "spatial-k3", "cbam"),
    "Arrangement": ("baseline", "cbam", "spatial-first", "parallel"),
}


@dataclass
class Row:
    variant: str
    title: str
    accuracy: tuple[float, float, float]
    pointing: tuple[float, float, float]
    energy: tuple[float, float, float]
    train_seconds: float


def score(model: torch.nn.Module, recipe: Recipe, n: int, batch_size: int = 50) -> dict[str, tuple[float, float, float]]:
    """Accuracy, pointing game and energy (Grad-CAM, ground-truth class) on ``n`` held-out images."""
    level = DIFFICULTIES[recipe.difficulty]
    hits, points, energies = [], [], []
    for start in range(0, n, batch_size):
        samples = [render_sample(EVAL_SEED, i, recipe.size, difficulty=level) for i in range(start, min(n, start + batch_size))]
        results = explain_batch({"m": model}, [s.image for s in samples], targets=[s.label for s in samples])["m"]
        for r, s in zip(results, samples):
            hits.append(r.prediction == s.label)
            points.append(pointing_game(r.cam, s.mask, feature_shape=r.raw_cam.shape))
            energies.append(energy_pointing_game(r.cam, s.box))
    return {"accuracy": mean_ci(np.array(hits)), "pointing": mean_ci(np.array(points)), "energy": mean_ci(np.array(energies))}


def run_ablation(recipe: Recipe, out_dir: Path, n_eval: int = 1000, variants: Sequence[str] = tuple(VARIANTS),
                 device: str = "cpu", state_dir: Path | None = None) -> list[Row]:
    """Train (or reuse, when a finished checkpoint is there; or resume, when an interrupted run's state is
    in ``state_dir``) every variant in ``out_dir``; score each."""
    check_names(variants, VARIANTS, "variant")
    data, val, _ = training_data(replace(recipe, test_size=0))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in variants:
        v = VARIANTS[name]
        path = out_dir / f"ablation-{name}.pt"
        began = time.perf_counter()
        metrics = train(recipe, v.attention, path, data, val, device=device, resume=True, options=dict(v.options),
                        title=f" {v.title}", state_dir=state_dir)
        print(f"{name}: trained in {metrics['train_seconds']:.0f} s; scoring {n_eval} held-out images", file=sys.stderr)
        scores = score(load_checkpoint(path), recipe, n_eval)
        rows.append(Row(name, v.title, **scores, train_seconds=metrics["train_seconds"]))
        print(f"{name}: done in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return rows


def _cell(ci: tuple[float, float, float], percent: bool = True) -> str:
    f = (lambda x: f"{100 * x:.1f}") if percent else (lambda x: f"{x:.3f}")
    return f"{f(ci[0])} [{f(ci[1])}, {f(ci[2])}]"


def markdown(rows: Sequence[Row], recipe: Recipe, n_eval: int, full: Recipe | None = None) -> str:
    """The ablation tables, one per group of the paper, with the recipe and budget they were measured on."""
    by_name = {r.variant: r for r in rows}
    lines = ["# CBAM ablations on the generated task", "",
             f"ResNet-{recipe.depth}/w{recipe.width}, {recipe.difficulty} generator at {recipe.size} px; every variant trained "
             f"with one recipe, seed {recipe.seed} and batch order: {recipe.train_size} images x {recipe.epochs} epochs "
             f"({recipe.schedule} schedule), batch {recipe.batch_size}, lr {recipe.lr}, {recipe.init} initialisation."]
    if full is not None and (full.train_size, full.epochs, full.schedule) != (recipe.train_size, recipe.epochs, recipe.schedule):
        lines.append(f"This is a reduced budget ({recipe.train_size * recipe.epochs:,} training images seen; the demo set "
                     f"trains on {full.train_size:,} images until its held-out accuracy stops improving), so absolute "
                     f"numbers are lower than the demo set's.")
    lines += [f"Scores on {n_eval} held-out images (dataset seed {EVAL_SEED}), Grad-CAM at the last block of layer4, "
              "target = the true class; 95% intervals (Wilson for accuracy and pointing game, bootstrap for energy). "
              "Overlapping intervals mean this budget cannot tell the variants apart.", ""]
    for group, names in GROUPS.items():
        present = [by_name[n] for n in names if n in by_name]
        if not present:
            continue
        lines += [f"## {group}", "", "| variant | top-1 accuracy % | pointing game % | energy in box | train s |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r.title} | {_cell(r.accuracy)} | {_cell(r.pointing)} | {_cell(r.energy, False)} | {r.train_seconds:.0f} |"
                  for r in present]
        lines.append("")
    return "\n".join(lines)


def write_table(rows: Sequence[Row], recipe: Recipe, n_eval: int, path: Path, full: Recipe | None = None) -> Path:
    """Write :func:`markdown` to ``path`` and the raw rows next to it as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, markdown(rows, recipe, n_eval, full) + "\n")

    def write(f: IO[str]) -> None:
        writer = csv.writer(f)
        writer.writerow(["variant", "metric", "value", "lo", "hi", "n", "train_seconds", "recipe"])
        for r in rows:
            for metric in ("accuracy", "pointing", "energy"):
                writer.writerow([r.variant, metric, *(f"{v:.6f}" for v in getattr(r, metric)), n_eval, r.train_seconds,
                                 json.dumps(asdict(recipe))])

    atomic_write_text(path.with_suffix(".csv"), write)
    return path
