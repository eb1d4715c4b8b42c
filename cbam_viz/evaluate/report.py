"""A static HTML report of an evaluation that opens offline (one file, images embedded as data URIs):
the summary table with 95% intervals, the verdicts, and a gallery of the images on which the models
disagree most, each with every model's CAM and the annotation's outline."""
from __future__ import annotations

import base64
import html
import io
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from ..explain import explain_batch
from ..fileio import atomic_write_text
from ..models.sets import role_title
from ..render.overlay import outline, overlay
from .scoring import Target, model_input
from .summary import (ALPHA, ANALYSES, LABELS, NO_VERDICT, PRIMARY, SKIPS_SHOWN, Evaluation, analysis_counts,
                      metric_lines, summary_rows, surviving)

GALLERY = 12  # images shown
PANEL = 192  # px per panel in the gallery
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1a1a1a; max-width: 1400px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; }
table { border-collapse: collapse; font-size: 12.5px; } th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; }
th { background: #f2f2f2; } td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.win td.call { font-weight: 600; } .note { color: #555; max-width: 1100px; }
.item { margin: 18px 0; } .row { display: flex; gap: 8px; flex-wrap: wrap; }
figure { margin: 0; width: """ + str(PANEL) + """px; } figure img { width: 100%; image-rendering: auto; display: block; }
figcaption { font-size: 12px; color: #333; }
"""


def disagreement(evaluation: Evaluation, method: str) -> np.ndarray:
    """Per image: the largest difference between any model and the reference on any metric (pointing
    counts 1 when one hits and the other misses) for ``method``'s half-pixel map."""
    by_role = evaluation.values[method]["half-pixel"]
    ref = by_role[evaluation.reference_role]
    gaps = [np.abs(by_role[role][metric].astype(np.float64) - ref[metric].astype(np.float64))
            for role in evaluation.compared for metric in ("pointing", "energy", "iou")]
    return np.max(gaps, axis=0)


def _png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((PANEL, PANEL), Image.Resampling.NEAREST if pixels.shape[0] < PANEL else
                                   Image.Resampling.LANCZOS).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(src: str, alt: str, caption: str) -> str:
    return f'<figure><img src="{src}" alt="{html.escape(alt)}"><figcaption>{caption}</figcaption></figure>'


def _gallery(evaluation: Evaluation, models: Mapping[str, nn.Module], dataset: Dataset, method: str,
             class_names: Sequence[str], count: int) -> list[str]:
    gaps = disagreement(evaluation, method)
    order = np.argsort(-gaps, kind="stable")[:count]
    targets = [dataset[evaluation.indices[i]] for i in order]
    if not targets or not all(isinstance(t, Target) for t in targets):
        return ["<p>No gallery: the images could not be read again.</p>"]
    labels = [t.label for t in targets]
    batch = torch.stack([t.pixels for t in targets])
    pixels = batch.permute(0, 2, 3, 1).numpy()
    results = {role: explain_batch({role: models[role]}, model_input(batch, models[role]), targets=labels, method=method,
                                   target_layer=evaluation.layer or None)[role]
               for role in evaluation.roles}
    out = []
    for k, (i, t) in enumerate(zip(order, targets)):
        image = pixels[k]
        panels = [_figure(_png(outline(image, t.mask, (0, 255, 0))), t.image, "input, object outlined")]
        for role in evaluation.roles:
            r = results[role][k]
            values = evaluation.values[method]["half-pixel"][role]
            caption = (f"<b>{html.escape(role_title(role))}</b>: explains {html.escape(class_names[r.target])} "
                       f"({r.probs[r.target]:.0%}); predicts {html.escape(class_names[r.prediction])} "
                       f"({r.probs[r.prediction]:.0%})<br>pointing {'hit' if values['pointing'][i] else 'miss'}, "
                       f"AUC {values['auc'][i]:.2f}, rank hit {values['rank_hit'][i]:.2f}, energy {values['energy'][i]:.2f}, "
                       f"concentration {values['concentration'][i]:.2f}, IoU {values['iou'][i]:.2f}")
            panels.append(_figure(_png(outline(overlay(image, r.cam), t.mask)), f"{role} CAM of {t.image}", caption))
        out.append(f'<div class="item"><div><b>{html.escape(t.image)}</b> &middot; class {html.escape(t.class_name)} '
                   f'&middot; largest difference {gaps[i]:.2f}</div><div class="row">{"".join(panels)}</div></div>')
    return out


def _text(markdown: str) -> str:
    """Escaped text with Markdown's `code` spans as <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(markdown))


def _interval(row: dict, key: str, mean: str) -> str:
    return f"{row[mean]:.3f} [{row[f'{key}_lo']:.3f}, {row[f'{key}_hi']:.3f}]"


def _columns(ref: str, metrics: Sequence[str]) -> list[tuple[str, str]]:
    """What each column of the summary table means (for every metric, higher is better)."""
    return [
        ("analysis, n", "which images and maps a row scores, and how many images: " + "; ".join(
            f"{a}: {text}" for a, text in ANALYSES.items()) + f". Only {PRIMARY} decides which model localizes better."),
        ("method", "the CAM method; \"all methods\" rows are top-1 accuracy, which needs no CAM."),
        ("metric", " ".join(metric_lines(metrics)) + " For every metric, higher is better: a larger ROAD drop means "
                   "the map found pixels the model needs."),
        ("placement", "how the CAM, computed on the target layer's coarse grid (e.g. 7x7), is laid on the image: "
                      "half-pixel puts each cell's value at the middle of its block of pixels (what grad-cam and the "
                      "app draw), receptive-field at the centre of the cell's receptive field. The verdict needs both."),
        ("model", "the model compared with the reference."),
        (f"{ref} [95% CI], model [95% CI]", "each model's mean score with its 95% confidence interval."),
        (f"model - {ref} [95% CI]", "the mean paired difference (same images) with its 95% interval; above 0: the "
                                    "model scores higher."),
        ("p", "the paired test's p-value (exact McNemar for proportions, sign-flip permutation otherwise), "
              "before correction."),
        ("Holm p", "p after Holm's correction for multiple comparisons over the rows of the same analysis."),
        ("this placement", f"this row's call: a side is better only when Holm p < {ALPHA:g} and the interval of the "
                           "difference excludes 0."),
        ("verdict", "the call both placements agree on; \"depends on placement\" when they differ. A row whose "
                    "interval excludes 0 can still read \"no clear difference\": its cell then says that the "
                    "multiple-comparison correction is why."),
    ]


def _verdict(row: dict, tests: int) -> str:
    """The verdict, with the reason when only the multiple-comparison correction stands in the way."""
    excludes_zero = not row["diff_lo"] <= 0 <= row["diff_hi"]
    if row["call"] == NO_VERDICT and excludes_zero and row["p"] < ALPHA <= row["p_holm"]:
        return (f"{row['verdict']}: the interval excludes 0 and p = {row['p']:.2g}, but Holm's correction over "
                f"{tests} tests gives p = {row['p_holm']:.2g} (needs < {ALPHA:g})")
    return row["verdict"]


def _table(evaluation: Evaluation, rows: list[dict]) -> list[str]:
    ref = role_title(evaluation.reference_role)
    head = ["analysis", "n", "method", "metric", "placement", "model", f"{ref} [95% CI]", "model [95% CI]",
            f"model - {ref} [95% CI]", "p", "Holm p", "this placement", "verdict"]
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    tests = Counter(r["analysis"] for r in rows)  # Holm's correction runs per analysis
    for r in rows:
        cells = ([html.escape(str(r[k])) for k in ("analysis", "n", "method", "metric", "placement")]
                 + [html.escape(role_title(r["model"]))])
        numbers = [_interval(r, "baseline", "baseline"), _interval(r, "model", "model_mean"),
                   f"{r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]", f"{r['p']:.2g}", f"{r['p_holm']:.2g}"]
        win = ' class="win"' if r["call"] != NO_VERDICT else ""
        out.append(f"<tr{win}>" + "".join(f"<td>{c}</td>" for c in cells) + "".join(f'<td class="num">{n}</td>' for n in numbers)
                   + f'<td class="call">{html.escape(r["call"])}</td><td>{html.escape(_verdict(r, tests[r["analysis"]]))}</td></tr>')
    columns = "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(text)}</li>"
                      for name, text in _columns(ref, evaluation.metrics))
    return out + ["</tbody></table>", f"<h3>The columns</h3><ul class='note'>{columns}</ul>"]


def write_report(evaluation: Evaluation, models: Mapping[str, nn.Module], dataset: Dataset, class_names: Sequence[str],
                 out_dir: Path, count: int = GALLERY) -> Path:
    """``<stem>_report.html`` in ``out_dir``: one file, no server, no network."""
    rows = summary_rows(evaluation)
    method = next(iter(evaluation.values))
    h, w = evaluation.image_shape
    survivors = surviving(rows)
    names = ", ".join(f"{role_title(r)} ({html.escape(models[r].info.title)})" for r in evaluation.roles)
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Localization: {html.escape(evaluation.stem)}"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>Localization of set <code>{html.escape(evaluation.name)}</code></h1>",
             f"<p class='note'>{evaluation.n} {_text(evaluation.source)}, {h}x{w} px as the models see them; models: {names}; "
             f"CAMs at {html.escape(evaluation.layer or 'the last block')}. "
             f"Every model is compared with {html.escape(role_title(evaluation.reference_role))}: paired tests (exact McNemar "
             "for proportions, sign-flip permutation otherwise), Holm-adjusted over the rows of each analysis; a verdict needs "
             "the adjusted p &lt; 0.05, an interval that excludes 0, and both CAM placements to agree.</p>",
             "<p class='note'>Analyses: " + "; ".join(f"<b>{html.escape(a)}</b> (n = {n}): {html.escape(ANALYSES[a])}"
                                                      for a, n in analysis_counts(evaluation).items())
             + f". A model localizes better only if it wins on <b>{html.escape(PRIMARY)}</b>.</p>",
             "<h2>What each metric measures, and what it does not</h2><ul>"
             + "".join(f"<li>{html.escape(line)}</li>" for line in metric_lines(evaluation.metrics)) + "</ul>"]
    if evaluation.reference_note:
        parts.append(f"<p class='note'>{_text(evaluation.reference_note)}</p>")
    if evaluation.seen_as:
        parts.append(f"<p class='note'><b>Warning: these images were used to build the models ({evaluation.seen_as} seed).</b></p>")
    parts.append(f"<h2>Differences that survive ({html.escape(PRIMARY)} images; accuracy: all images)</h2>")
    parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in survivors) + "</ul>" if survivors else "<p>None.</p>")
    parts += ["<h2>Summary</h2>", *_table(evaluation, rows)]
    parts += [f"<h2>Where the models disagree most ({html.escape(method)}, {LABELS['pointing']}, "
              f"{LABELS['energy']}, {LABELS['iou']}; maps of the annotated class)</h2>",
              "<p class='note'>Largest difference to the reference first; each CAM with the annotated object's outline "
              "(white; green on the input).</p>",
              *_gallery(evaluation, models, dataset, method, class_names, count)]
    if evaluation.skipped:
        shown = evaluation.skipped[:SKIPS_SHOWN]
        parts += [f"<h2>Skipped ({len(evaluation.skipped)})</h2><ul>"] + \
                 [f"<li><code>{html.escape(i)}</code>: {html.escape(r)}</li>" for i, r in shown] + \
                 ([f"<li>... and {len(evaluation.skipped) - len(shown)} more (see {html.escape(evaluation.stem)}_skipped.csv)</li>"]
                  if len(evaluation.skipped) > len(shown) else []) + ["</ul>"]
    parts.append("</body></html>")
    return atomic_write_text(out_dir / f"{evaluation.stem}_report.html", "\n".join(parts))
