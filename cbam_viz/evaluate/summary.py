"""Per-image scores of a run (:class:`Evaluation`), the statistics over them and the files they make.

Statistics (:func:`summary_rows`): Wilson intervals for proportions, bootstrap intervals for means;
every model of the set against the reference model (the set's ``baseline``, else its first model)
with a test and an interval on the same statistic, the mean difference (exact McNemar + Newcombe
interval for hit/miss metrics, sign-flip permutation test + bootstrap interval otherwise); Holm
correction across every row of the table (models x metrics x methods x placements, and accuracy).
A side wins a row only when the Holm-adjusted p < 0.05 and the interval excludes 0, and a verdict
needs both placements of the CAM to agree.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from ..data import PLACEMENTS, REFERENCE_MAPS, holm, mean_ci, paired_test, pointing_tolerance
from ..models.sets import role_title

ALPHA = 0.05
METRICS = ("pointing", "energy", "iou", "road")
BINARY = {"pointing"}
LABELS = {"accuracy": "top-1 accuracy", "pointing": "pointing game", "energy": "energy pointing game",
          "iou": "IoU@0.5", "road": "ROAD MoRF drop"}
NO_VERDICT = "no clear difference"
DEPENDS_ON_PLACEMENT = "depends on placement"
SKIPS_SHOWN = 20  # the Markdown report lists this many skipped images; the skip CSV has them all
COLUMNS = ("image", "index", "class", "model", "method", "placement", "accuracy", *METRICS)


class Score(NamedTuple):
    """One model's scores of one map on one image (a row of the per-image CSV); ``road`` is None
    where there is none (the uniform map, or a run without ROAD)."""

    image: str
    index: int
    class_name: str
    model: str
    method: str  # a CAM method, or "uniform map" / "centre map"
    placement: str  # a CAM placement, "-" for the reference maps
    accuracy: bool
    pointing: bool
    energy: float
    iou: float
    road: float | None


def output_stem(name: str, dataset: str = "", layer: str = "") -> str:
    """The output files' common prefix: ``<set>``, then ``_<images folder>`` for a folder of images
    and ``_<layer>`` for a target layer other than the last block."""
    return "_".join(part for part in (name, dataset, layer) if part)


def reference_source(name: str) -> str:
    """The ``method`` a model-free reference map is recorded under: "uniform map", "centre map"."""
    return f"{name} map"


@dataclass
class Evaluation:
    """Per-image values of one run, in image order.

    ``values[method][placement][role][metric]`` and ``reference[map][role][metric]`` are arrays over
    images (a reference map is model-free, but its ROAD score depends on the model; the uniform map
    has none, as ROAD would impute every pixel of a constant map). ``roles`` lists every model of the
    set, the reference first. ``seen_as`` names the use of the dataset seed ("training",
    "validation") when its images helped build the set; ``skipped`` lists (image, reason) pairs.
    """

    name: str
    roles: list[str]
    images: list[str]
    classes: list[str]
    seed: int
    image_shape: tuple[int, int]
    feature_shapes: dict[str, tuple[int, int]]
    accuracy: dict[str, np.ndarray]
    values: dict[str, dict[str, dict[str, dict[str, np.ndarray]]]]
    reference: dict[str, dict[str, dict[str, np.ndarray]]]
    source: str = "generated images"
    seen_as: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    indices: list[int] | None = None
    reference_note: str = ""
    dataset: str = ""  # the images folder's name ("" for generated images): part of the output file names
    layer: str = ""  # the CAMs' target layer
    layer_in_name: bool = False  # a layer other than the last block: part of the output file names
    files: list[Path] = field(default_factory=list)  # the outputs, once written
    _tested: list[dict] | None = field(default=None, init=False, repr=False, compare=False)  # see tested_rows

    def __post_init__(self) -> None:
        if self.indices is None:
            self.indices = list(range(len(self.images)))

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def stem(self) -> str:
        return output_stem(self.name, self.dataset, self.layer if self.layer_in_name else "")

    @property
    def reference_role(self) -> str:
        """The model every other model is compared with."""
        return self.roles[0]

    @property
    def compared(self) -> list[str]:
        return self.roles[1:]

    @property
    def feature_shape(self) -> tuple[int, int]:
        """The reference model's target-layer map size."""
        return self.feature_shapes[self.reference_role]

    @property
    def tolerance(self) -> float:
        """The reference model's pointing-game tolerance in px."""
        return pointing_tolerance(self.image_shape, self.feature_shape)

    @property
    def metrics(self) -> list[str]:
        return [m for m in METRICS if m in self.values[next(iter(self.values))][PLACEMENTS[0]][self.reference_role]]

    @classmethod
    def from_scores(cls, scores: Iterable[Score], roles: Sequence[str], methods: Sequence[str], road: bool,
                    **fields) -> Evaluation:
        """Arrange per-image scores (any order; one complete set of rows per image) by image index."""
        metrics = METRICS if road else METRICS[:-1]
        by_key = {(s.index, s.model, s.method, s.placement): s for s in scores}
        indices = sorted({key[0] for key in by_key})
        first = {i: by_key[(i, roles[0], reference_source("centre"), "-")] for i in indices}

        def column(role: str, method: str, placement: str, metric: str) -> np.ndarray:
            return np.asarray([getattr(by_key[(i, role, method, placement)], metric) for i in indices],
                              dtype=bool if metric in BINARY else np.float64)

        values = {m: {p: {r: {k: column(r, m, p, k) for k in metrics} for r in roles} for p in PLACEMENTS} for m in methods}
        reference = {name: {r: {k: column(r, reference_source(name), "-", k) for k in metrics if name == "centre" or k != "road"}
                            for r in roles} for name in REFERENCE_MAPS}
        accuracy = {r: column(r, reference_source("centre"), "-", "accuracy").astype(bool) for r in roles}
        return cls(roles=list(roles), images=[first[i].image for i in indices], classes=[first[i].class_name for i in indices],
                   accuracy=accuracy, values=values, reference=reference, indices=indices, **fields)

    def scores(self) -> Iterable[Score]:
        """Every per-image row: image by image, model by model, each CAM under each placement, then the reference maps."""
        sources = [(method, placement, by_role) for method, by_placement in self.values.items()
                   for placement, by_role in by_placement.items()]
        sources += [(reference_source(name), "-", by_role) for name, by_role in self.reference.items()]
        for i, (image, index, class_name) in enumerate(zip(self.images, self.indices, self.classes)):
            for role in self.roles:
                for method, placement, by_role in sources:
                    v = by_role[role]
                    yield Score(image, index, class_name, role, method, placement, bool(self.accuracy[role][i]),
                                bool(v["pointing"][i]), float(v["energy"][i]), float(v["iou"][i]),
                                float(v["road"][i]) if "road" in v else None)


def write_scores(f: IO[str], scores: Iterable[Score], precise: bool = False, header: bool = True) -> None:
    """Per-image rows as CSV (``COLUMNS``); ``precise`` writes floats exactly (partial files), else to 5 decimals."""
    writer = csv.writer(f)
    if header:
        writer.writerow(COLUMNS)
    number = repr if precise else "{:.5f}".format
    for s in scores:
        writer.writerow([s.image, s.index, s.class_name, s.model, s.method, s.placement, int(s.accuracy), int(s.pointing),
                         number(s.energy), number(s.iou), "" if s.road is None else number(s.road)])


def read_scores(rows: Iterable[Sequence[str]]) -> list[Score]:
    """CSV rows (without the header) back into scores; a malformed row raises ValueError."""
    out = []
    for row in rows:
        image, index, class_name, model, method, placement, accuracy, pointing, energy, iou, road = row
        out.append(Score(image, int(index), class_name, model, method, placement, accuracy == "1", pointing == "1",
                         float(energy), float(iou), float(road) if road else None))
    return out


def decide(p_adjusted: float, ci_low: float, ci_high: float, model: str = "CBAM", reference: str = "baseline",
           alpha: float = ALPHA) -> str:
    """One row's call: a side wins only when the adjusted p < ``alpha`` *and* the interval of the
    difference (``model`` - ``reference``) excludes 0."""
    if p_adjusted >= alpha or ci_low <= 0 <= ci_high:
        return NO_VERDICT
    return f"{model} better" if ci_low > 0 else f"{reference} better"


def combine_placements(calls: Sequence[str]) -> str:
    """The verdict over placements: their common call, else "depends on placement"."""
    return calls[0] if len(set(calls)) == 1 else DEPENDS_ON_PLACEMENT


def _reference_means(evaluation: Evaluation, metric: str, role: str) -> dict[str, float | str]:
    """Mean score of each model-free map for the reference model and ``role`` ("" where the map has no such score)."""
    out: dict[str, float | str] = {}
    for name, by_role in evaluation.reference.items():
        for key, r in (("baseline", evaluation.reference_role), ("model", role)):
            out[f"{name}_{key}"] = float(by_role[r][metric].mean()) if metric in by_role[r] else ""
    return out


def _row(method: str, metric: str, placement: str, role: str, reference: str, base: np.ndarray, other: np.ndarray,
         references: dict) -> dict:
    row = {"method": method, "metric": LABELS[metric], "placement": placement, "model": role, "reference": reference}
    for key, values in (("baseline", base), ("model", other)):
        mean, lo, hi = mean_ci(values, ALPHA)
        row.update({f"{key}_mean" if key == "model" else key: mean, f"{key}_lo": lo, f"{key}_hi": hi})
    row.update(references)
    test = paired_test(other, base, alpha=ALPHA)
    row.update({"diff": test["mean_diff"], "diff_lo": test["ci_low"], "diff_hi": test["ci_high"],
                "test": test["test"], "p": test["p_value"]})
    return row


def summary_rows(evaluation: Evaluation) -> list[dict]:
    """Top-1 accuracy of each compared model, then one row per method, metric, compared model and
    placement: the reference's and the model's means with 95% intervals, model-free reference means,
    the difference (model - reference) with its interval, p, Holm-adjusted p over all rows, the
    row's ``call`` and the ``verdict`` shared by the placements of a method, metric and model."""
    return judge(tested_rows(evaluation))


def tested_rows(evaluation: Evaluation) -> list[dict]:
    """The rows of :func:`summary_rows` before the Holm correction (no ``p_holm``, ``call``, ``verdict``):
    fresh copies of rows computed once per evaluation (the intervals and tests are seeded, so a second
    computation would give the same numbers; the outputs, the report, the CLI and a sweep all need them)."""
    if evaluation._tested is None:
        evaluation._tested = _tested_rows(evaluation)
    return [dict(row) for row in evaluation._tested]


def _tested_rows(evaluation: Evaluation) -> list[dict]:
    ref = evaluation.reference_role
    no_reference = {f"{name}_{key}": "" for name in REFERENCE_MAPS for key in ("baseline", "model")}
    rows = [_row("all methods", "accuracy", "-", role, ref, evaluation.accuracy[ref], evaluation.accuracy[role], no_reference)
            for role in evaluation.compared]
    for method, by_placement in evaluation.values.items():
        for metric in evaluation.metrics:
            for role in evaluation.compared:
                references = _reference_means(evaluation, metric, role)
                for placement in PLACEMENTS:
                    by_role = by_placement[placement]
                    rows.append(_row(method, metric, placement, role, ref, by_role[ref][metric], by_role[role][metric], references))
    return rows


def judge(rows: list[dict], group: Sequence[str] = ("method", "metric", "model")) -> list[dict]:
    """Holm-adjust the p of every row together (one family), then each row's ``call`` and the
    ``verdict`` shared by the rows (placements) with equal ``group`` keys. Updates and returns ``rows``."""
    for row, p_adjusted in zip(rows, holm([r["p"] for r in rows])):
        row.update({"p_holm": float(p_adjusted), "call": decide(p_adjusted, row["diff_lo"], row["diff_hi"],
                                                                role_title(row["model"]), role_title(row["reference"]))})
    groups: dict[tuple, list[str]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in group), []).append(row["call"])
    for row in rows:
        row["verdict"] = combine_placements(groups[tuple(row[k] for k in group)])
    return rows


def surviving(rows: Sequence[dict]) -> list[str]:
    """One line per (model, method, metric) whose difference survives Holm correction under both placements."""
    seen, lines = set(), []
    for r in rows:
        key = (r["model"], r["method"], r["metric"])
        if key not in seen and r["verdict"] not in (NO_VERDICT, DEPENDS_ON_PLACEMENT):
            seen.add(key)
            lines.append(f"{role_title(r['model'])} vs {role_title(r['reference'])}, {r['method']}, {r['metric']}: "
                         f"{r['verdict']} ({r['diff']:+.3f})")
    return lines


def _reference_cell(row: dict, name: str) -> str:
    base, other = row[f"{name}_baseline"], row[f"{name}_model"]
    if base == "":
        return "n/a"
    return f"{base:.3f}" if f"{base:.3f}" == f"{other:.3f}" else f"{base:.3f} / {other:.3f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(evaluation: Evaluation, rows: list[dict]) -> str:
    """The report: how the run was made, the full table, a grid of verdicts and the differences that survive."""
    h, w = evaluation.image_shape
    fh, fw = evaluation.feature_shape
    ref = role_title(evaluation.reference_role)
    lines = [f"Model set `{evaluation.name}` ({', '.join(role_title(r) for r in evaluation.roles)}), {evaluation.n} "
             f"{evaluation.source}, {h}x{w} px, target = annotated class, target layer "
             f"{evaluation.layer + ' ' if evaluation.layer else ''}map {fh}x{fw} ({h / fh:g} px cells), "
             f"pointing tolerance {evaluation.tolerance:g} px. Every model is compared with {ref}. Mean [95% interval: "
             f"Wilson for proportions, bootstrap otherwise]; difference = model - {ref} [95% interval: Newcombe for "
             "proportions, bootstrap otherwise], p from exact McNemar (proportions) or a sign-flip permutation test of "
             f"the mean difference, Holm-adjusted over all {len(rows)} rows. Uniform / centre map: model-free reference "
             f"scores ({ref} / model where they differ).", ""]
    if evaluation.reference_note:
        lines += [evaluation.reference_note, ""]
    if evaluation.seen_as:
        lines += [f"**Warning: dataset seed {evaluation.seed} is the set's {evaluation.seen_as} seed; these images "
                  "were used to build the models, so this is not a held-out evaluation.**", ""]
    if evaluation.skipped:
        lines += [f"Skipped {len(evaluation.skipped)} image(s) or annotation(s) (listed at the end and in "
                  f"`{evaluation.stem}_skipped.csv`).", ""]
    other = role_title(evaluation.compared[0]) if len(evaluation.compared) == 1 else "model"
    lines += [f"| method | metric | placement | model | {ref} | {other} | uniform map | centre map "
              f"| {other} - {evaluation.reference_role} | p | Holm p | this placement | verdict |", "|---" * 13 + "|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['metric']} | {r['placement']} | {role_title(r['model'])} "
                     f"| {r['baseline']:.3f} [{r['baseline_lo']:.3f}, {r['baseline_hi']:.3f}] "
                     f"| {r['model_mean']:.3f} [{r['model_lo']:.3f}, {r['model_hi']:.3f}] "
                     f"| {_reference_cell(r, 'uniform')} | {_reference_cell(r, 'centre')} "
                     f"| {r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}] | {r['p']:.2g} | {r['p_holm']:.2g} "
                     f"| {r['call']} | {r['verdict']} |")
    methods = list(evaluation.values)
    verdicts = {(r["method"], r["metric"], r["model"]): r["verdict"] for r in rows}
    lines += ["", f"Localization verdicts against {ref} (both placements must agree):", "",
              "| metric | model | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    for metric in dict.fromkeys(r["metric"] for r in rows if r["method"] in methods):
        for role in evaluation.compared:
            lines.append(f"| {metric} | {role_title(role)} | " + " | ".join(verdicts[(m, metric, role)] for m in methods) + " |")
    survivors = surviving(rows)
    lines += ["", "Differences that survive Holm correction and agree across placements: "
              + ("none." if not survivors else ""), ""]
    lines += [f"- {line}" for line in survivors]
    if evaluation.skipped:
        shown = evaluation.skipped[:SKIPS_SHOWN]
        lines += ["", "Skipped:", ""] + [f"- `{_cell(image)}`: {_cell(reason)}" for image, reason in shown]
        if len(evaluation.skipped) > len(shown):
            lines.append(f"- ... and {len(evaluation.skipped) - len(shown)} more")
    return "\n".join(lines).rstrip("\n") + "\n"


def write_outputs(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Per-image CSV (every CAM under every placement, and the reference maps), summary CSV, the
    Markdown report and, when images were skipped, the skip list (CSV: image, reason)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image = out_dir / f"{evaluation.stem}_per_image.csv"
    with open(per_image, "w", newline="") as f:
        write_scores(f, evaluation.scores())
    rows = summary_rows(evaluation)
    summary = out_dir / f"{evaluation.stem}_summary.csv"
    with open(summary, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = out_dir / f"{evaluation.stem}_summary.md"
    table.write_text(markdown_table(evaluation, rows))
    paths = [per_image, summary, table]
    if evaluation.skipped:
        paths.append(out_dir / f"{evaluation.stem}_skipped.csv")
        with open(paths[-1], "w", newline="") as f:
            csv.writer(f).writerows([("image", "reason"), *evaluation.skipped])
    return paths
