"""Verdicts that survive scrutiny: one evaluation per target layer and per training seed of a set.

A *replicated* set lists, in the manifest, sets with the same recipe and data but other training
seeds (``python -m cbam_viz train --seeds K``); each is labelled by its training seed (``seed3``),
or ``run1``, ``run2``, ... when a replicate has no (distinct) seed on record. :func:`sweep`
evaluates every replicate at every target layer; :func:`sweep_rows` puts the paired tests of all
those runs in one table, for each analysis (images every model classifies correctly -- the one that
decides --, all images, each model's own predicted class). Within a seed, Holm's correction runs over
every row of every layer of one analysis (one family per seed and analysis). Across seeds the rule is deliberately strict (:func:`across_seeds`): a side wins
only when it wins, after Holm and under both placements, in *every* seed; when some seeds call a
winner and others do not, the verdict is "depends on the seed"; seeds that all say the same keep
that (also "depends on placement"). Between-seed spread is the standard deviation of the per-seed
differences.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from markdown_it import MarkdownIt

from ..data import PLACEMENTS
from ..explain import target_layers
from ..fileio import atomic_write, atomic_write_csv, atomic_write_text
from ..models.sets import ModelSet, role_title
from ..render.study_plots import figure_png
from ..render.sweep_plot import depth_plot
from .summary import (ALPHA, ANALYSES, DEPENDS_ON_PLACEMENT, LABELS, NO_VERDICT, PRIMARY, Evaluation, judge, metric_lines,
                      output_stem, tested_rows)

DEPENDS_ON_SEED = "depends on the seed"
DEPENDS_ON_LAYER = "depends on the layer"
PLOTTED_PLACEMENT = PLACEMENTS[0]
ACCURACY = LABELS["accuracy"]


def parse_layers(spec: str | None, model_set: ModelSet) -> list[str | None]:
    """``--layers``: None (the last block), "all" (every block), "stages" (the last block of each
    stage) or comma-separated block names; ValueError naming an unknown block."""
    if not spec:
        return [None]
    names = target_layers(next(iter(model_set.models.values())))
    if spec == "all":
        return list(names)
    if spec == "stages":
        return [name for name, after in zip(names, [*names[1:], ""]) if name.split(".")[0] != after.split(".")[0]]
    layers = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [layer for layer in layers if layer not in names]
    if unknown or not layers:
        raise ValueError(f"unknown layer(s) {', '.join(unknown) or repr(spec)}; give all, stages or some of {', '.join(names)}")
    return sorted(dict.fromkeys(layers), key=names.index)


@dataclass
class Sweep:
    """Evaluations of one set at several target layers and for several training seeds:
    ``runs[replicate][layer]``; ``labels[replicate]``: "seed<training seed>", or "run<position>"."""

    name: str
    labels: dict[str, str]
    runs: dict[str, dict[str, Evaluation]]

    @property
    def replicates(self) -> list[str]:
        return list(self.runs)

    @property
    def layers(self) -> list[str]:
        return list(next(iter(self.runs.values())))

    @property
    def first(self) -> Evaluation:
        return next(iter(next(iter(self.runs.values())).values()))

    @property
    def stem(self) -> str:
        """The output files' prefix: ``<set>_sweep`` (``<set>_<images folder>_sweep`` for a folder)."""
        return output_stem(self.name, self.first.dataset) + "_sweep"


def sweep(names: Sequence[str], layers: Sequence[str | None], load: Callable[[str], ModelSet],
          run: Callable[[ModelSet, str | None], Evaluation | None]) -> Sweep | None:
    """``run`` every replicate set (``names``, loaded one at a time by ``load``) at every layer; None
    on ranks other than 0 under torchrun."""
    runs: dict[str, dict[str, Evaluation]] = {}
    seeds: dict[str, int | None] = {}
    for name in names:
        model_set = load(name)
        seeds[name] = next(iter(model_set.entries.values()), {}).get("seed")
        for layer in layers:
            evaluation = run(model_set, layer)
            if evaluation is not None:
                runs.setdefault(name, {})[evaluation.layer] = evaluation
    known = None not in seeds.values() and len(set(seeds.values())) == len(seeds)
    labels = {name: f"seed{seeds[name]}" if known else f"run{position + 1}" for position, name in enumerate(names)}
    return Sweep(names[0], labels, runs) if runs else None


def across_seeds(verdicts: Sequence[str]) -> str:
    """The verdict over seeds: the seeds' common verdict; "no clear difference" when no seed calls a
    winner; otherwise "depends on the seed"."""
    if len(set(verdicts)) == 1:
        return verdicts[0]
    if all(v in (NO_VERDICT, DEPENDS_ON_PLACEMENT) for v in verdicts):
        return NO_VERDICT
    return DEPENDS_ON_SEED


def across_layers(verdicts: Sequence[str]) -> str:
    """The verdict over target layers (each already across seeds): their common verdict; "depends on
    the layer" when some layer has a winner and others do not agree; else "depends on the seed" when
    some layer does; else "no clear difference"."""
    if len(set(verdicts)) == 1:
        return verdicts[0]
    if any(v.endswith(" better") for v in verdicts):
        return DEPENDS_ON_LAYER
    return DEPENDS_ON_SEED if DEPENDS_ON_SEED in verdicts else NO_VERDICT


def sweep_rows(result: Sweep) -> list[dict]:
    """One row per analysis, layer, method, metric, compared model and placement (accuracy once, layer
    "-"): each seed's n, difference, interval, Holm-adjusted p (family: all of that seed's rows of the
    analysis) and verdict, the mean and between-seed SD of the difference, and the verdict across seeds.
    A row some seed lacks (an analysis with too few images there) is left out."""
    per_seed: dict[str, dict[tuple, dict]] = {}
    for replicate, by_layer in result.runs.items():
        rows = []
        for position, (layer, evaluation) in enumerate(by_layer.items()):
            rows += [{**r, "layer": "-" if r["metric"] == ACCURACY else layer} for r in tested_rows(evaluation)
                     if position == 0 or r["metric"] != ACCURACY]
        judge(rows, group=("layer", "analysis", "method", "metric", "model"))
        per_seed[replicate] = {(r["analysis"], r["layer"], r["method"], r["metric"], r["model"], r["placement"]): r
                               for r in rows}
    out = []
    for key in per_seed[result.replicates[0]]:
        if any(key not in per_seed[rep] for rep in result.replicates):
            continue
        seeds = [per_seed[rep][key] for rep in result.replicates]
        diffs = np.array([r["diff"] for r in seeds], dtype=np.float64)
        analysis, layer, method, metric, model, placement = key
        row = {"analysis": analysis, "layer": layer, "method": method, "metric": metric, "model": model, "placement": placement,
               "reference": seeds[0]["reference"], "baseline": float(np.mean([r["baseline"] for r in seeds])),
               "model_mean": float(np.mean([r["model_mean"] for r in seeds])), "diff_mean": float(diffs.mean()),
               "diff_sd": float(diffs.std(ddof=1)) if len(diffs) > 1 else None,
               "verdict": across_seeds([r["verdict"] for r in seeds])}
        for rep, r in zip(result.replicates, seeds):
            tag = result.labels[rep]
            row.update({f"{tag}_n": r["n"], f"{tag}_diff": r["diff"], f"{tag}_lo": r["diff_lo"], f"{tag}_hi": r["diff_hi"],
                        f"{tag}_p": r["p"],
                        f"{tag}_p_holm": r["p_holm"], f"{tag}_verdict": r["verdict"]})
        out.append(row)
    return out


def _sd(row: dict) -> str:
    return "n/a" if row["diff_sd"] is None else f"{row['diff_sd']:.3f}"


def _short(verdict: str) -> str:
    return {NO_VERDICT: "·", DEPENDS_ON_SEED: "seed-dependent", DEPENDS_ON_PLACEMENT: "placement-dependent",
            DEPENDS_ON_LAYER: "layer-dependent"}.get(verdict, verdict)


HOLM = " (Holm)"  # marks a seed whose difference only the multiple-comparison correction stops


def _seed_call(row: dict, seed: str) -> str:
    """A seed's verdict, marked with :data:`HOLM` when the row's interval excludes 0 and p < ALPHA but the
    Holm-adjusted p is not: the correction, not the data alone, is why it reads "no clear difference"."""
    call = _short(row[f"{seed}_verdict"])
    corrected = (row[f"{seed}_verdict"] == NO_VERDICT and not row[f"{seed}_lo"] <= 0 <= row[f"{seed}_hi"]
                 and row[f"{seed}_p"] < ALPHA <= row[f"{seed}_p_holm"])
    return call + HOLM if corrected else call


def sweep_markdown(result: Sweep, rows: list[dict]) -> str:
    """The sweep report: how it was made, a grid of verdicts across seeds (layer x metric, per model
    and method), then every row with each seed's difference."""
    first = result.first
    seeds = [result.labels[r] for r in result.replicates]
    ref = role_title(first.reference_role)
    compared = [role_title(r) for r in first.compared]
    warning = ([f"**Warning: dataset seed {first.seed} is the set's {first.seen_as} seed; these images were used to build "
                "the models, so this is not a held-out evaluation.**", ""] if first.seen_as else [])
    lines = [f"Layer and seed sweep of set `{result.name}` ({', '.join(role_title(r) for r in first.roles)}): "
             f"{len(result.layers)} target layer(s) x {len(seeds)} training seed(s) ({', '.join(seeds)}; replicate sets "
             f"{', '.join(f'`{r}`' for r in result.replicates)}), {first.n} {first.source}. Every model is compared with "
             f"{ref} on the same images with the tests of the single-run tables (exact McNemar or sign-flip permutation, "
             "95% intervals); Holm's correction runs over all rows of one seed (every layer, method, metric, model and "
             "placement of one analysis). A seed's verdict needs both placements to agree. **Across seeds a side wins only "
             f"if it wins in every seed**; when some seeds call a winner and others do not, the verdict is \"{DEPENDS_ON_SEED}\". "
             f"SD: the between-seed standard deviation of the difference. \"{HOLM.strip()}\" after a seed's verdict: its "
             f"interval excludes 0 and p < {ALPHA:g}, but not after Holm's correction over that seed's tests of the "
             "same analysis, so it is no clear difference.", "",
             "Analyses: " + "; ".join(f"**{a}**: {text}" for a, text in ANALYSES.items())
             + f". **A model localizes better only if it wins on `{PRIMARY}`.**", "",
             "What each metric measures, and what it does not:", "", *[f"- {line}" for line in metric_lines(first.metrics)],
             "", *warning]
    accuracy = [r for r in rows if r["metric"] == ACCURACY]
    if accuracy:
        lines += ["| top-1 accuracy | " + " | ".join(seeds) + " | mean | between-seed SD | verdict across seeds |",
                  "|---" * (len(seeds) + 4) + "|"]
        for r in accuracy:
            cells = [f"{r[f'{s}_diff']:+.3f}" for s in seeds]
            lines.append(f"| {role_title(r['model'])} - {ref} | " + " | ".join(cells)
                         + f" | {r['diff_mean']:+.3f} | {_sd(r)} | {r['verdict']} |")
        lines.append("")
    cams = [r for r in rows if r["metric"] != ACCURACY]
    methods = list(dict.fromkeys(r["method"] for r in cams))
    verdicts = {(r["analysis"], r["layer"], r["method"], r["metric"], role_title(r["model"])): r["verdict"] for r in cams}
    metrics = list(dict.fromkeys(r["metric"] for r in cams))
    for analysis in dict.fromkeys(r["analysis"] for r in cams):
        for method in methods:
            n = ", ".join(f"{s} {next(r[f'{s}_n'] for r in cams if r['analysis'] == analysis)}" for s in seeds)
            lines += [f"Verdicts across seeds, **{analysis}** (n = {n}), {method} (· = no clear difference):", "",
                      "| layer | " + " | ".join(f"{m}: {model}" for model in compared for m in metrics) + " |",
                      "|---" * (1 + len(compared) * len(metrics)) + "|"]
            for layer in result.layers:
                lines.append(f"| {layer} | " + " | ".join(_short(verdicts.get((analysis, layer, method, m, model), "n/a"))
                                                         for model in compared for m in metrics) + " |")
            if len(result.layers) > 1:
                lines.append("| **every layer** | " + " | ".join(
                    f"**{_short(across_layers([verdicts.get((analysis, layer, method, m, model), NO_VERDICT) for layer in result.layers]))}**"
                    for model in compared for m in metrics) + " |")
            lines.append("")
    lines += [f"| analysis | layer | method | metric | placement | model | {ref} mean | model mean | "
              + " | ".join(f"{s}: diff [95%]" for s in seeds) + " | mean diff | SD | seed verdicts | across seeds |",
              "|---" * (12 + len(seeds)) + "|"]
    for r in cams:
        cells = [f"{r[f'{s}_diff']:+.3f} [{r[f'{s}_lo']:+.3f}, {r[f'{s}_hi']:+.3f}]" for s in seeds]
        calls = [_seed_call(r, s) for s in seeds]
        across = r["verdict"] + (" (Holm's correction, in every seed)" if all(c.endswith(HOLM) for c in calls) else "")
        lines.append(f"| {r['analysis']} | {r['layer']} | {r['method']} | {r['metric']} | {r['placement']} | {role_title(r['model'])} "
                     f"| {r['baseline']:.3f} | {r['model_mean']:.3f} | " + " | ".join(cells)
                     + f" | {r['diff_mean']:+.3f} | {_sd(r)} | {', '.join(calls)} | {across} |")
    return "\n".join(lines) + "\n"


def curves(result: Sweep, method: str, metric: str, placement: str = PLOTTED_PLACEMENT) -> dict[str, np.ndarray]:
    """Mean ``metric`` per model title: an array seeds x layers."""
    out = {}
    for role in result.first.roles:
        out[role_title(role)] = np.array([[float(np.mean(by_layer[layer].values[method][placement][role][metric]))
                                           for layer in result.layers] for by_layer in result.runs.values()])
    return out


def write_sweep(result: Sweep, out_dir: Path, rows: list[dict] | None = None) -> list[Path]:
    """``<set>_sweep.csv`` (every row of ``rows``, default :func:`sweep_rows`), ``.md`` (the report),
    ``.png`` (metric vs depth per model) and ``.html`` (the report and the plot in one offline page)."""
    rows = rows if rows is not None else sweep_rows(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{result.stem}.{suffix}" for suffix in ("csv", "md", "png", "html")]
    atomic_write_csv(paths[0], rows)
    text = sweep_markdown(result, rows)
    atomic_write_text(paths[1], text)
    first = result.first
    plots = {method: {LABELS[m]: curves(result, method, m) for m in first.metrics if m != "energy_matched"}
             for method in first.values}
    seeds = "; thin lines: one training seed each, thick: their mean" if len(result.replicates) > 1 else ""
    image = figure_png(depth_plot(result.layers, plots, f"{result.name}: mean per target layer ({PLOTTED_PLACEMENT} placement{seeds})"))
    atomic_write(paths[2], lambda f: f.write(image))
    atomic_write_text(paths[3], _html(result.name, text, image))
    return paths


def _html(name: str, markdown: str, png: bytes) -> str:
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)  # names from a models file stay text
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}: layer and seed sweep</title>"
            "<style>body{font:14px/1.45 system-ui,sans-serif;margin:24px;max-width:1500px}table{border-collapse:collapse;"
            "font-size:12.5px;margin:8px 0 20px}th,td{border:1px solid #ccc;padding:3px 6px}th{background:#f2f2f2}"
            "img{max-width:100%}</style></head><body>"
            f"<h1>{html.escape(name)}: layer and seed sweep</h1><p><img src='data:image/png;base64,{base64.b64encode(png).decode()}' "
            "alt='mean score per target layer and model'></p>"
            f"{body}</body></html>\n")
