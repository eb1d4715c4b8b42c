"""Objective localization benchmark of a model pair on held-out generated images.

For each model and CAM method, with the ground-truth class as target: top-1 accuracy, pointing
game (15 px tolerance at 224 px, scaled), energy-based pointing game (share of CAM energy in the
target box), IoU of the CAM thresholded at 0.5 with the mask, and grad-cam's ROAD
most-relevant-first score (the target probability lost when the 20% most relevant pixels are
imputed away; higher means the map found pixels the model needs). Every mean comes with a 95%
bootstrap interval, and baseline vs CBAM with a paired test (exact McNemar for hit/miss
metrics, Wilcoxon signed-rank for continuous ones).
"""
from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from tqdm import tqdm

from .data import CLASSES, bootstrap_ci, energy_pointing_game, mask_iou, paired_test, pointing_game, render_sample
from .explain import as_batch, explain_batch
from .models.pairs import Pair

EVAL_SEED = 3  # distinct from the training (1) and validation (2) dataset seeds
METRICS = ("accuracy", "pointing", "energy", "iou", "road")
BINARY = {"accuracy", "pointing"}
LABELS = {"accuracy": "top-1 accuracy", "pointing": "pointing game", "energy": "energy pointing game",
          "iou": "IoU@0.5", "road": "ROAD MoRF drop"}


@dataclass
class Evaluation:
    """Per-image values: ``values[method][role][metric]`` is an array over images."""

    pair: str
    n: int
    seed: int
    values: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _scale_box(box: tuple[int, int, int, int], src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    x0, y0, x1, y1 = box
    return int(x0 * sx), int(y0 * sy), int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy))


def evaluate(pair: Pair, methods: list[str], n: int = 1000, seed: int = EVAL_SEED, batch_size: int = 64,
             road: bool = True) -> Evaluation:
    """Run every method on ``n`` generated images; the target is the ground-truth class."""
    if pair.models["cbam"].info.class_names != list(CLASSES):
        raise ValueError(f"pair {pair.name!r} was not trained on the generated shapes; evaluate needs ground truth for its classes")
    size = pair.models["cbam"].info.input_size
    torch.manual_seed(seed)  # ROAD's imputer adds random noise: keep the scores reproducible
    result = Evaluation(pair.name, n, seed, {m: {r: {k: [] for k in METRICS} for r in pair.models} for m in methods})
    road_metric = ROADMostRelevantFirst(percentile=80)
    for start in tqdm(range(0, n, batch_size), desc=f"evaluating {pair.name} ({', '.join(methods)})", file=sys.stderr):
        samples = [render_sample(seed, i, size) for i in range(start, min(n, start + batch_size))]
        labels = [s.label for s in samples]
        inputs = {role: as_batch(model, [s.image for s in samples]).to(next(model.parameters()).device)
                  for role, model in pair.models.items()}
        for method in methods:
            for role, model in pair.models.items():
                results = explain_batch({role: model}, inputs[role], targets=labels, method=method)[role]
                values = result.values[method][role]
                for s, r in zip(samples, results):
                    mask = _resize_mask(s.mask, r.cam.shape)
                    values["accuracy"].append(r.prediction == s.label)
                    values["pointing"].append(pointing_game(r.cam, mask))
                    values["energy"].append(energy_pointing_game(r.cam, _scale_box(s.box, s.mask.shape, r.cam.shape)))
                    values["iou"].append(mask_iou(r.cam, mask))
                if road:
                    cams = np.stack([r.cam for r in results])
                    change = road_metric(inputs[role], cams, [ClassifierOutputSoftmaxTarget(t) for t in labels], model)
                    values["road"].extend((-np.asarray(change)).tolist())
    for method_values in result.values.values():
        for role_values in method_values.values():
            for metric in METRICS:
                dtype = bool if metric in BINARY else np.float64
                role_values[metric] = np.asarray(role_values[metric], dtype=dtype)
            if not road:
                del role_values["road"]
    return result


def _verdict(test: dict) -> str:
    """A side wins only when the paired test is significant *and* the mean difference's CI excludes 0."""
    if test["p_value"] >= 0.05 or test["ci_low"] <= 0 <= test["ci_high"]:
        return "no clear difference"
    return "CBAM better" if test["mean_diff"] > 0 else "baseline better"


def summary_rows(evaluation: Evaluation) -> list[dict]:
    """One row per method and metric: both means with 95% CIs, the difference and the paired test."""
    rows = []
    for method, by_role in evaluation.values.items():
        for metric in by_role["baseline"]:
            base, cbam = by_role["baseline"][metric], by_role["cbam"][metric]
            row = {"method": method, "metric": LABELS[metric]}
            for role, values in (("baseline", base), ("cbam", cbam)):
                mean, lo, hi = bootstrap_ci(values.astype(np.float64))
                row.update({f"{role}": mean, f"{role}_lo": lo, f"{role}_hi": hi})
            test = paired_test(cbam, base)
            row.update({"diff": test["mean_diff"], "diff_lo": test["ci_low"], "diff_hi": test["ci_high"],
                        "test": test["test"], "p": test["p_value"],
                        "winner": _verdict(test)})
            rows.append(row)
    return rows


def markdown_table(evaluation: Evaluation, rows: list[dict]) -> str:
    lines = [f"Pair `{evaluation.pair}`, {evaluation.n} held-out generated images (dataset seed {evaluation.seed}), "
             "target = ground-truth class; mean [95% bootstrap CI]; difference = CBAM - baseline.", "",
             "| method | metric | baseline | CBAM | CBAM - baseline | paired test | p | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['metric']} | {r['baseline']:.3f} [{r['baseline_lo']:.3f}, {r['baseline_hi']:.3f}] "
                     f"| {r['cbam']:.3f} [{r['cbam_lo']:.3f}, {r['cbam_hi']:.3f}] "
                     f"| {r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}] | {r['test']} | {r['p']:.3g} | {r['winner']} |")
    return "\n".join(lines) + "\n"


def write_outputs(evaluation: Evaluation, out_dir: Path) -> tuple[Path, Path, Path]:
    """Per-image CSV, summary CSV and the Markdown table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image = out_dir / f"{evaluation.pair}_per_image.csv"
    with open(per_image, "w", newline="") as f:
        writer = csv.writer(f)
        metrics = list(next(iter(next(iter(evaluation.values.values())).values())))
        writer.writerow(["index", "method", "model", *metrics])
        for method, by_role in evaluation.values.items():
            for role, values in by_role.items():
                for i in range(evaluation.n):
                    writer.writerow([i, method, role, *(int(values[m][i]) if m in BINARY else f"{values[m][i]:.5f}" for m in metrics)])
    rows = summary_rows(evaluation)
    summary = out_dir / f"{evaluation.pair}_summary.csv"
    with open(summary, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = out_dir / f"{evaluation.pair}_summary.md"
    table.write_text(markdown_table(evaluation, rows))
    return per_image, summary, table
