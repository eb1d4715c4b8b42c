"""Objective localization benchmark of a model pair on held-out generated images.

For each model and CAM method, with the ground-truth class as target: pointing game, energy-based
pointing game (share of CAM energy in the target box), IoU of the CAM thresholded at 0.5 with the
mask, and grad-cam's ROAD most-relevant-first score (the target probability lost when the 20% most
relevant pixels are imputed away; higher means the map found pixels the model needs); top-1
accuracy once per model. Every CAM is scored under both placements of the feature-resolution map
on the image (:func:`cbam_viz.data.place_cam`), and model-free maps (uniform, centre) are scored
with the same functions as a chance level.

Statistics (:func:`summary_rows`): Wilson intervals for proportions, bootstrap intervals for
means; baseline vs CBAM with a test and an interval on the same statistic, the mean difference
(exact McNemar + Newcombe interval for hit/miss metrics, sign-flip permutation test + bootstrap
interval otherwise); Holm correction across every row of the table. A side wins a row only when
the Holm-adjusted p < 0.05, the interval excludes 0, and both placements agree.
"""
from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn
from tqdm import tqdm

from .data import (CLASSES, PLACEMENTS, REFERENCE_MAPS, Sample, energy_pointing_game, holm, mask_iou,
                   mean_ci, paired_test, place_cam, pointing_game, pointing_tolerance, reference_map,
                   render_sample)
from .explain import as_batch, explain_batch
from .models.sets import ModelSet
from .training import TRAIN_SEED, VAL_SEED

EVAL_SEED = 3  # distinct from the training (1) and validation (2) dataset seeds
ALPHA = 0.05
METRICS = ("pointing", "energy", "iou", "road")
BINARY = {"pointing"}
LABELS = {"accuracy": "top-1 accuracy", "pointing": "pointing game", "energy": "energy pointing game",
          "iou": "IoU@0.5", "road": "ROAD MoRF drop"}
ROLES = ("baseline", "cbam")
NO_VERDICT = "no clear difference"


@dataclass
class Evaluation:
    """Per-image values of one run.

    ``values[method][placement][role][metric]`` and ``reference[map][role][metric]`` are arrays over
    images (a reference map is model-free, but its ROAD score depends on the model; the uniform map
    has none, as ROAD would impute every pixel of a constant map). ``seen_as`` names the use of the dataset seed ("training", "validation")
    when its images helped build the pair.
    """

    pair: str
    n: int
    seed: int
    image_shape: tuple[int, int]
    feature_shape: tuple[int, int]
    accuracy: dict[str, np.ndarray]
    values: dict[str, dict[str, dict[str, dict[str, np.ndarray]]]]
    reference: dict[str, dict[str, dict[str, np.ndarray]]]
    seen_as: str | None = None
    tolerance: float = field(init=False)

    def __post_init__(self) -> None:
        self.tolerance = pointing_tolerance(self.image_shape, self.feature_shape)


def seen_seeds(pair: ModelSet) -> dict[int, str]:
    """Dataset seeds whose images were used to build ``pair``: seed -> "training" or "validation"."""
    seeds = {TRAIN_SEED: "training", VAL_SEED: "validation"}
    for entry in pair.entries.values():
        for key, use in (("train_dataset_seed", "training"), ("heldout_dataset_seed", "validation")):
            if key in entry:
                seeds[entry[key]] = use
    return seeds


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _scale_box(box: tuple[int, int, int, int], src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    x0, y0, x1, y1 = box
    return int(x0 * sx), int(y0 * sy), int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy))


def _scores(cam: np.ndarray, sample: Sample, feature_shape: tuple[int, int]) -> dict[str, bool | float]:
    mask = _resize_mask(sample.mask, cam.shape)
    return {"pointing": pointing_game(cam, mask, feature_shape=feature_shape),
            "energy": energy_pointing_game(cam, _scale_box(sample.box, sample.mask.shape, cam.shape)),
            "iou": mask_iou(cam, mask)}


def _road(metric: ROADMostRelevantFirst, x: torch.Tensor, cams: np.ndarray, labels: list[int], model: nn.Module) -> list[float]:
    change = metric(x, cams, [ClassifierOutputSoftmaxTarget(t) for t in labels], model)
    return (-np.asarray(change, dtype=np.float64)).tolist()


def _arrays(tree: dict) -> dict:
    """Lists of per-image values -> arrays (bool for hit/miss metrics), recursively."""
    return {k: _arrays(v) if isinstance(v, dict) else np.asarray(v, dtype=bool if k in BINARY else np.float64)
            for k, v in tree.items()}


def _append(lists: dict[str, list], scores: list[dict]) -> None:
    for score in scores:
        for key, value in score.items():
            lists[key].append(value)


def evaluate(pair: ModelSet, methods: list[str], n: int = 1000, seed: int = EVAL_SEED, batch_size: int = 64,
             road: bool = True, allow_seen_seed: bool = False) -> Evaluation:
    """Run every method on ``n`` generated images; the target is the ground-truth class.

    Refuses (ValueError) a dataset seed whose images trained or validated the pair, unless
    ``allow_seen_seed``; the result then records it in ``seen_as``.
    """
    if set(pair.models) != set(ROLES):
        raise ValueError(f"evaluate compares a 'baseline' and a 'cbam' model; set {pair.name!r} has {pair.roles}")
    if pair.models["cbam"].info.class_names != list(CLASSES):
        raise ValueError(f"pair {pair.name!r} was not trained on the generated shapes; evaluate needs ground truth for its classes")
    seen_as = seen_seeds(pair).get(seed)
    if seen_as and not allow_seen_seed:
        raise ValueError(f"dataset seed {seed} is the {seen_as} seed of set {pair.name!r}: its images were used to build "
                         f"the models; use another seed (default {EVAL_SEED}) or --allow-training-seed to score them anyway")
    size = pair.models["cbam"].info.input_size
    shape = (size, size)
    references = {name: reference_map(name, shape) for name in REFERENCE_MAPS}
    torch.manual_seed(seed)  # ROAD's imputer adds random noise: keep the scores reproducible
    metrics = METRICS if road else METRICS[:-1]
    accuracy: dict[str, list] = {role: [] for role in ROLES}
    values = {m: {p: {r: {k: [] for k in metrics} for r in ROLES} for p in PLACEMENTS} for m in methods}
    reference = {name: {r: {k: [] for k in metrics if name == "centre" or k != "road"} for r in ROLES} for name in REFERENCE_MAPS}
    feature_shapes: dict[str, tuple[int, int]] = {}
    road_metric = ROADMostRelevantFirst(percentile=80)
    for start in tqdm(range(0, n, batch_size), desc=f"evaluating {pair.name} ({', '.join(methods)})", file=sys.stderr):
        samples = [render_sample(seed, i, size) for i in range(start, min(n, start + batch_size))]
        labels = [s.label for s in samples]
        inputs = {role: as_batch(model, [s.image for s in samples]).to(next(model.parameters()).device)
                  for role, model in pair.models.items()}
        for method in methods:
            for role, model in pair.models.items():
                results = explain_batch({role: model}, inputs[role], targets=labels, method=method)[role]
                feature_shapes[role] = results[0].raw_cam.shape
                if method == methods[0]:
                    accuracy[role] += [r.prediction == s.label for r, s in zip(results, samples)]
                for placement in PLACEMENTS:
                    cams = np.stack([place_cam(r.raw_cam, shape, placement) for r in results])
                    _append(values[method][placement][role], [_scores(c, s, feature_shapes[role]) for c, s in zip(cams, samples)])
                    if road:
                        values[method][placement][role]["road"] += _road(road_metric, inputs[role], cams, labels, model)
        for name, ref in references.items():
            for role, model in pair.models.items():
                _append(reference[name][role], [_scores(ref, s, feature_shapes[role]) for s in samples])
                if road and name == "centre":
                    cams = np.repeat(ref[None], len(samples), axis=0)
                    reference[name][role]["road"] += _road(road_metric, inputs[role], cams, labels, model)
    hits = {role: np.asarray(correct, dtype=bool) for role, correct in accuracy.items()}
    return Evaluation(pair.name, n, seed, shape, feature_shapes["cbam"], hits, _arrays(values), _arrays(reference), seen_as)


def decide(p_adjusted: float, ci_low: float, ci_high: float, alpha: float = ALPHA) -> str:
    """One row's call: a side wins only when the adjusted p < ``alpha`` *and* the interval of the
    difference (CBAM - baseline) excludes 0."""
    if p_adjusted >= alpha or ci_low <= 0 <= ci_high:
        return NO_VERDICT
    return "CBAM better" if ci_low > 0 else "baseline better"


def combine_placements(calls: Sequence[str]) -> str:
    """The verdict over placements: their common call, else "depends on placement"."""
    return calls[0] if len(set(calls)) == 1 else "depends on placement"


def _reference_means(evaluation: Evaluation, metric: str) -> dict[str, float | str]:
    """Mean score of each model-free map per role ("" where the map has no such score)."""
    return {f"{name}_{role}": float(by_role[role][metric].mean()) if metric in by_role[role] else ""
            for name, by_role in evaluation.reference.items() for role in ROLES}


def _row(method: str, metric: str, placement: str, base: np.ndarray, cbam: np.ndarray, references: dict) -> dict:
    row = {"method": method, "metric": LABELS[metric], "placement": placement}
    for role, values in (("baseline", base), ("cbam", cbam)):
        mean, lo, hi = mean_ci(values, ALPHA)
        row.update({role: mean, f"{role}_lo": lo, f"{role}_hi": hi})
    row.update(references)
    test = paired_test(cbam, base, alpha=ALPHA)
    row.update({"diff": test["mean_diff"], "diff_lo": test["ci_low"], "diff_hi": test["ci_high"],
                "test": test["test"], "p": test["p_value"]})
    return row


def summary_rows(evaluation: Evaluation) -> list[dict]:
    """Top-1 accuracy, then one row per method, metric and placement: both means with 95% intervals,
    model-free reference means, the difference with its interval, p, Holm-adjusted p over all rows,
    the row's ``call`` and the ``verdict`` shared by the placements of a method and metric."""
    no_reference = {f"{name}_{role}": "" for name in REFERENCE_MAPS for role in ROLES}
    rows = [_row("all methods", "accuracy", "-", evaluation.accuracy["baseline"], evaluation.accuracy["cbam"], no_reference)]
    for method, by_placement in evaluation.values.items():
        for metric in by_placement[PLACEMENTS[0]]["cbam"]:
            references = _reference_means(evaluation, metric)
            for placement in PLACEMENTS:
                by_role = by_placement[placement]
                rows.append(_row(method, metric, placement, by_role["baseline"][metric], by_role["cbam"][metric], references))
    for row, p_adjusted in zip(rows, holm([r["p"] for r in rows])):
        row.update({"p_holm": float(p_adjusted), "call": decide(p_adjusted, row["diff_lo"], row["diff_hi"])})
    for row in rows:
        row["verdict"] = combine_placements([r["call"] for r in rows if (r["method"], r["metric"]) == (row["method"], row["metric"])])
    return rows


def _reference_cell(row: dict, name: str) -> str:
    base, cbam = row[f"{name}_baseline"], row[f"{name}_cbam"]
    if base == "":
        return "n/a"
    return f"{base:.3f}" if f"{base:.3f}" == f"{cbam:.3f}" else f"{base:.3f} / {cbam:.3f}"


def markdown_table(evaluation: Evaluation, rows: list[dict]) -> str:
    """The report: how the run was made, the full table, and a grid of verdicts."""
    h, w = evaluation.image_shape
    fh, fw = evaluation.feature_shape
    held_out = "generated images that neither trained nor validated the set" if evaluation.seen_as is None else "generated images"
    lines = [f"Model set `{evaluation.pair}`, {evaluation.n} {held_out} (dataset seed {evaluation.seed}), {h}x{w} px, "
             f"target = ground-truth class, target layer map {fh}x{fw} ({h / fh:g} px cells), pointing tolerance "
             f"{evaluation.tolerance:g} px. Mean [95% interval: Wilson for proportions, bootstrap otherwise]; "
             "difference = CBAM - baseline [95% interval: Newcombe for proportions, bootstrap otherwise], "
             "p from exact McNemar (proportions) or a sign-flip permutation test of the mean difference, "
             f"Holm-adjusted over all {len(rows)} rows. Uniform / centre map: model-free reference scores "
             "(baseline / CBAM where they differ).", ""]
    if evaluation.seen_as:
        lines += [f"**Warning: dataset seed {evaluation.seed} is the set's {evaluation.seen_as} seed; these images "
                  "were used to build the models, so this is not a held-out evaluation.**", ""]
    lines += ["| method | metric | placement | baseline | CBAM | uniform map | centre map | CBAM - baseline | p | Holm p | this placement | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['metric']} | {r['placement']} "
                     f"| {r['baseline']:.3f} [{r['baseline_lo']:.3f}, {r['baseline_hi']:.3f}] "
                     f"| {r['cbam']:.3f} [{r['cbam_lo']:.3f}, {r['cbam_hi']:.3f}] "
                     f"| {_reference_cell(r, 'uniform')} | {_reference_cell(r, 'centre')} "
                     f"| {r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}] | {r['p']:.2g} | {r['p_holm']:.2g} "
                     f"| {r['call']} | {r['verdict']} |")
    methods = list(evaluation.values)
    lines += ["", "Localization verdicts (both placements must agree):", "",
              "| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    verdicts = {(r["method"], r["metric"]): r["verdict"] for r in rows}
    for metric in dict.fromkeys(r["metric"] for r in rows if r["method"] in methods):
        lines.append(f"| {metric} | " + " | ".join(verdicts[(m, metric)] for m in methods) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(evaluation: Evaluation, out_dir: Path) -> tuple[Path, Path, Path]:
    """Per-image CSV (every CAM under every placement, and the reference maps), summary CSV and the Markdown report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image = out_dir / f"{evaluation.pair}_per_image.csv"
    sources = [(method, placement, by_role) for method, by_placement in evaluation.values.items()
               for placement, by_role in by_placement.items()]
    sources += [(f"{name} map", "-", by_role) for name, by_role in evaluation.reference.items()]
    metrics = list(evaluation.values[next(iter(evaluation.values))][PLACEMENTS[0]]["cbam"])
    with open(per_image, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "source", "placement", "model", "accuracy", *metrics])
        for source, placement, by_role in sources:
            for role in ROLES:
                values = by_role[role]
                for i in range(evaluation.n):
                    cells = [(int(values[m][i]) if m in BINARY else f"{values[m][i]:.5f}") if m in values else "" for m in metrics]
                    writer.writerow([i, source, placement, role, int(evaluation.accuracy[role][i]), *cells])
    rows = summary_rows(evaluation)
    summary = out_dir / f"{evaluation.pair}_summary.csv"
    with open(summary, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = out_dir / f"{evaluation.pair}_summary.md"
    table.write_text(markdown_table(evaluation, rows))
    return per_image, summary, table
