"""Per-image scores of a run (:class:`Evaluation`), the statistics over them and the files they make.

Statistics (:func:`summary_rows`): Wilson intervals for proportions, bootstrap intervals for means;
every model of the set against the reference model (the set's ``baseline``, else its first model)
with a test and an interval on the same statistic, the mean difference (exact McNemar + Newcombe
interval for hit/miss metrics, sign-flip permutation test + bootstrap interval otherwise), in three
analyses (:data:`ANALYSES`): the images every model classifies correctly (the primary one), all
images, and each model's map of its own top-1 class. Holm correction runs across every row of one
analysis (models x metrics x methods x placements; accuracy with all images). A side wins a row
only when the Holm-adjusted p < 0.05 and the interval excludes 0, a verdict needs both placements
of the CAM to agree, and only the primary analysis decides which model localizes better.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from ..data import PLACEMENTS, REFERENCE_MAPS, holm, mean_ci, paired_test, pointing_tolerance
from ..fileio import atomic_write_csv, atomic_write_text
from ..models.sets import role_title

ALPHA = 0.05
METRICS = ("pointing", "auc", "rank_hit", "energy", "energy_matched", "concentration", "iou", "road")
BINARY = {"pointing"}
DESCRIPTIVE = {"concentration"}  # how sharp a map is: reported per model, not tested as "better"
LABELS = {"accuracy": "top-1 accuracy", "pointing": "pointing game", "auc": "AUC", "rank_hit": "rank hit",
          "energy": "energy pointing game", "energy_matched": "energy, concentration-matched",
          "concentration": "concentration", "iou": "IoU@0.5", "road": "ROAD MoRF drop"}
MEANINGS = {  # one line each: what a metric measures, and what it does not
    "pointing": "does the map's peak fall on the object (within the tolerance)? Only the peak counts, and on small "
                "maps a centre guess comes close (see the centre map).",
    "auc": "how well the map's values rank object pixels above background (0.5 = chance); blind to sharpness and to "
           "any rescaling that keeps the order.",
    "rank_hit": "share of the object-sized set of highest pixels that lies on the object; blind to sharpness, and "
                "harder for small objects.",
    "energy": "share of the map's total value inside the object's box; a sharper map scores higher even where it "
              "points at the same place (see concentration).",
    "energy_matched": "energy after the maps of one image are sharpened (by a power) to the same concentration: "
                      "energy with sharpness held equal.",
    "concentration": "share of pixels at or above half the map's maximum: how sharp a map is, not where it points "
                     "(not tested).",
    "iou": "overlap of the map above 0.5 with the object mask; mixes where the map points with how sharp it is.",
    "road": "probability the model loses when the map's top 20% of pixels are imputed: what the model needs, not where "
            "the object is.",
}
PRIMARY = "all correct"
ANALYSES = {PRIMARY: "images every compared model classifies correctly, maps of the annotated class",
            "all images": "every image, maps of the annotated class",
            "own prediction": "every image, each model's map of its own top-1 class (the annotated class where it is right)"}
ACCURACY_ANALYSIS = "all images"
MIN_IMAGES = 2  # an analysis with fewer images gets no rows (an interval needs two)
NO_VERDICT = "no clear difference"
DEPENDS_ON_PLACEMENT = "depends on placement"
SKIPS_SHOWN = 20  # the Markdown report lists this many skipped images; the skip CSV has them all
COLUMNS = ("image", "index", "class", "model", "method", "placement", "target", "predicted", "accuracy", "all_correct",
           *METRICS)
TARGETS = ("annotated", "predicted")


class Score(NamedTuple):
    """One model's scores of one map on one image (a row of the per-image CSV); ``road`` is None
    where there is none (the uniform map, maps of the predicted class, or a run without ROAD)."""

    image: str
    index: int
    class_name: str
    model: str
    method: str  # a CAM method, or "uniform map" / "centre map"
    placement: str  # a CAM placement, "-" for the reference maps
    target: str  # the class the map explains: "annotated", the model's own "predicted" class; "-" for reference maps
    predicted: str  # the model's top-1 class
    accuracy: bool  # the model classifies the image correctly
    all_correct: bool  # every model of the set classifies the image correctly
    pointing: bool
    auc: float
    rank_hit: float
    energy: float
    energy_matched: float
    concentration: float
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
    has none, as ROAD would impute every pixel of a constant map); ``own`` is shaped like ``values``
    for each model's map of its own top-1 class (no ROAD), ``predicted[role]`` that class's name per
    image (both None when not recorded). ``roles`` lists every model of the
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
    resumed: bool = False  # some of its images were read back from an earlier run's partial file
    own: dict[str, dict[str, dict[str, dict[str, np.ndarray]]]] | None = None
    predicted: dict[str, list[str]] | None = None
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
    def all_correct(self) -> np.ndarray:
        """Per image: every model of the set classifies it correctly."""
        return np.logical_and.reduce([self.accuracy[r] for r in self.roles])

    def analyses(self) -> list[tuple[str, np.ndarray, dict]]:
        """``(analysis, images kept (bool per image), values by method)`` for each of :data:`ANALYSES` that
        this evaluation has (the own-prediction one needs ``own``)."""
        every = np.ones(self.n, bool)
        out = [(PRIMARY, self.all_correct, self.values), ("all images", every, self.values)]
        return out + ([("own prediction", every, self.own)] if self.own is not None else [])

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

    @property
    def tested_metrics(self) -> list[str]:
        """The metrics that get a paired test (all but the descriptive ones)."""
        return [m for m in self.metrics if m not in DESCRIPTIVE]

    @classmethod
    def from_scores(cls, scores: Iterable[Score], roles: Sequence[str], methods: Sequence[str], road: bool,
                    **fields) -> Evaluation:
        """Arrange per-image scores (any order; one complete set of rows per image) by image index."""
        metrics = METRICS if road else METRICS[:-1]
        no_road = [k for k in metrics if k != "road"]
        by_key = {(s.index, s.model, s.method, s.placement, s.target): s for s in scores}
        indices = sorted({key[0] for key in by_key})
        first = {i: by_key[(i, roles[0], reference_source("centre"), "-", "-")] for i in indices}

        def column(role: str, method: str, placement: str, metric: str, target: str = "-") -> np.ndarray:
            return np.asarray([getattr(by_key[(i, role, method, placement, target)], metric) for i in indices],
                              dtype=bool if metric in BINARY else np.float64)

        def cams(target: str, kept: list[str]) -> dict:
            return {m: {p: {r: {k: column(r, m, p, k, target) for k in kept} for r in roles} for p in PLACEMENTS}
                    for m in methods}

        reference = {name: {r: {k: column(r, reference_source(name), "-", k) for k in metrics if name == "centre" or k != "road"}
                            for r in roles} for name in REFERENCE_MAPS}
        accuracy = {r: column(r, reference_source("centre"), "-", "accuracy").astype(bool) for r in roles}
        predicted = {r: [by_key[(i, r, reference_source("centre"), "-", "-")].predicted for i in indices] for r in roles}
        return cls(roles=list(roles), images=[first[i].image for i in indices], classes=[first[i].class_name for i in indices],
                   accuracy=accuracy, values=cams("annotated", metrics), reference=reference, indices=indices,
                   own=cams("predicted", no_road), predicted=predicted, **fields)

    def scores(self) -> Iterable[Score]:
        """Every per-image row: image by image, model by model, each CAM under each placement, then the reference maps."""
        sources = [(method, placement, target, by_role) for target, values in (("annotated", self.values), ("predicted", self.own))
                   if values is not None for method, by_placement in values.items() for placement, by_role in by_placement.items()]
        sources += [(reference_source(name), "-", "-", by_role) for name, by_role in self.reference.items()]
        every = self.all_correct
        for i, (image, index, class_name) in enumerate(zip(self.images, self.indices, self.classes)):
            for role in self.roles:
                predicted = self.predicted[role][i] if self.predicted else ""
                for method, placement, target, by_role in sources:
                    v = by_role[role]
                    yield Score(image, index, class_name, role, method, placement, target, predicted,
                                bool(self.accuracy[role][i]), bool(every[i]), bool(v["pointing"][i]),
                                *(float(v[k][i]) for k in METRICS[1:-1]), float(v["road"][i]) if "road" in v else None)


def write_scores(f: IO[str], scores: Iterable[Score], precise: bool = False, header: bool = True) -> None:
    """Per-image rows as CSV (``COLUMNS``); ``precise`` writes floats exactly (partial files), else to 5 decimals."""
    writer = csv.writer(f)
    if header:
        writer.writerow(COLUMNS)
    number = repr if precise else "{:.5f}".format
    for s in scores:
        writer.writerow([*s[:8], int(s.accuracy), int(s.all_correct), int(s.pointing), *(number(v) for v in s[11:-1]),
                         "" if s.road is None else number(s.road)])


def read_scores(rows: Iterable[Sequence[str]]) -> list[Score]:
    """CSV rows (without the header) back into scores; a malformed row raises ValueError."""
    out = []
    for row in rows:
        if len(row) != len(COLUMNS):
            raise ValueError(f"expected {len(COLUMNS)} columns, got {len(row)}")
        image, index, class_name, model, method, placement, target, predicted, accuracy, every, pointing, *numbers, road = row
        out.append(Score(image, int(index), class_name, model, method, placement, target, predicted, accuracy == "1",
                         every == "1", pointing == "1", *map(float, numbers), float(road) if road else None))
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


def _reference_means(evaluation: Evaluation, metric: str, role: str, keep: np.ndarray) -> dict[str, float | str]:
    """Mean score of each model-free map on the kept images for the reference model and ``role`` ("" where the map
    has no such score)."""
    out: dict[str, float | str] = {}
    for name, by_role in evaluation.reference.items():
        for key, r in (("baseline", evaluation.reference_role), ("model", role)):
            out[f"{name}_{key}"] = float(by_role[r][metric][keep].mean()) if metric in by_role[r] else ""
    return out


def _row(analysis: str, method: str, metric: str, placement: str, role: str, reference: str, base: np.ndarray,
         other: np.ndarray, references: dict) -> dict:
    row = {"analysis": analysis, "n": int(base.size), "method": method, "metric": LABELS[metric], "placement": placement,
           "model": role, "reference": reference}
    for key, values in (("baseline", base), ("model", other)):
        mean, lo, hi = mean_ci(values, ALPHA)
        row.update({f"{key}_mean" if key == "model" else key: mean, f"{key}_lo": lo, f"{key}_hi": hi})
    row.update(references)
    test = paired_test(other, base, alpha=ALPHA)
    row.update({"diff": test["mean_diff"], "diff_lo": test["ci_low"], "diff_hi": test["ci_high"],
                "test": test["test"], "p": test["p_value"]})
    return row


def summary_rows(evaluation: Evaluation) -> list[dict]:
    """Top-1 accuracy of each compared model (analysis "all images"), then per analysis with at least
    :data:`MIN_IMAGES` images one row per method, tested metric, compared model and placement: the
    analysis and its n, the reference's and the model's means with 95% intervals, model-free reference
    means, the difference (model - reference) with its interval, p, Holm-adjusted p over the rows of its
    analysis, the row's ``call`` and the ``verdict`` shared by the placements of a method, metric and model."""
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
    rows = [_row(ACCURACY_ANALYSIS, "all methods", "accuracy", "-", role, ref, evaluation.accuracy[ref], evaluation.accuracy[role],
                 no_reference) for role in evaluation.compared]
    for analysis, keep, values in evaluation.analyses():
        if keep.sum() < MIN_IMAGES:
            continue
        for method, by_placement in values.items():
            for metric in [m for m in evaluation.tested_metrics if m in by_placement[PLACEMENTS[0]][ref]]:
                for role in evaluation.compared:
                    references = _reference_means(evaluation, metric, role, keep)
                    for placement in PLACEMENTS:
                        by_role = by_placement[placement]
                        rows.append(_row(analysis, method, metric, placement, role, ref, by_role[ref][metric][keep],
                                         by_role[role][metric][keep], references))
    return rows


def judge(rows: list[dict], group: Sequence[str] = ("analysis", "method", "metric", "model")) -> list[dict]:
    """Holm-adjust the p of the rows of each analysis together (one family per analysis), then each row's
    ``call`` and the ``verdict`` shared by the rows (placements) with equal ``group`` keys. Updates and
    returns ``rows``."""
    families: dict[str, list[dict]] = {}
    for row in rows:
        families.setdefault(row["analysis"], []).append(row)
    for family in families.values():
        for row, p_adjusted in zip(family, holm([r["p"] for r in family])):
            row.update({"p_holm": float(p_adjusted), "call": decide(p_adjusted, row["diff_lo"], row["diff_hi"],
                                                                    role_title(row["model"]), role_title(row["reference"]))})
    groups: dict[tuple, list[str]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in group), []).append(row["call"])
    for row in rows:
        row["verdict"] = combine_placements(groups[tuple(row[k] for k in group)])
    return rows


def surviving(rows: Sequence[dict]) -> list[str]:
    """One line per (model, method, metric) whose difference survives Holm correction under both placements
    on the primary analysis (images every model classifies correctly), and accuracy."""
    seen, lines = set(), []
    for r in rows:
        key = (r["model"], r["method"], r["metric"])
        primary = r["analysis"] == PRIMARY or r["metric"] == LABELS["accuracy"]
        if primary and key not in seen and r["verdict"] not in (NO_VERDICT, DEPENDS_ON_PLACEMENT):
            seen.add(key)
            lines.append(f"{role_title(r['model'])} vs {role_title(r['reference'])}, {r['method']}, {r['metric']}: "
                         f"{r['verdict']} ({r['diff']:+.3f})")
    return lines


def metric_lines(metrics: Iterable[str]) -> list[str]:
    """One line per metric: its label, what it measures and what it does not."""
    return [f"{LABELS[m]}: {MEANINGS[m]}" for m in metrics]


def concentration_means(evaluation: Evaluation) -> list[tuple[str, str, str, int, dict[str, float]]]:
    """``(analysis, method, placement, n, {role: mean concentration})`` for every analysis with images."""
    out = []
    for analysis, keep, values in evaluation.analyses():
        if not keep.any():
            continue
        for method, by_placement in values.items():
            for placement, by_role in by_placement.items():
                if "concentration" in by_role[evaluation.reference_role]:
                    out.append((analysis, method, placement, int(keep.sum()),
                                {r: float(by_role[r]["concentration"][keep].mean()) for r in evaluation.roles}))
    return out


def _reference_cell(row: dict, name: str) -> str:
    base, other = row[f"{name}_baseline"], row[f"{name}_model"]
    if base == "":
        return "n/a"
    return f"{base:.3f}" if f"{base:.3f}" == f"{other:.3f}" else f"{base:.3f} / {other:.3f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def analysis_counts(evaluation: Evaluation) -> dict[str, int]:
    """How many images each analysis keeps."""
    return {analysis: int(keep.sum()) for analysis, keep, _ in evaluation.analyses()}


def markdown_table(evaluation: Evaluation, rows: list[dict]) -> str:
    """The report: how the run was made, what each metric measures, the full table, map concentration,
    a grid of verdicts per analysis and the differences that survive."""
    h, w = evaluation.image_shape
    fh, fw = evaluation.feature_shape
    ref = role_title(evaluation.reference_role)
    counts = analysis_counts(evaluation)
    lines = [f"Model set `{evaluation.name}` ({', '.join(role_title(r) for r in evaluation.roles)}), {evaluation.n} "
             f"{evaluation.source}, {h}x{w} px, target layer "
             f"{evaluation.layer + ' ' if evaluation.layer else ''}map {fh}x{fw} ({h / fh:g} px cells), "
             f"pointing tolerance {evaluation.tolerance:g} px. Every model is compared with {ref}. Mean [95% interval: "
             f"Wilson for proportions, bootstrap otherwise]; difference = model - {ref} [95% interval: Newcombe for "
             "proportions, bootstrap otherwise], p from exact McNemar (proportions) or a sign-flip permutation test of "
             "the mean difference, Holm-adjusted over the rows of each analysis. Uniform / centre map: model-free "
             f"reference scores ({ref} / model where they differ).", "",
             "Analyses (n = images): " + "; ".join(f"**{a}** (n = {counts[a]}): {ANALYSES[a]}" for a in counts)
             + f". **A model localizes better only if it wins on `{PRIMARY}`**, under both placements.", "",
             "What each metric measures, and what it does not:", ""]
    lines += [f"- {line}" for line in metric_lines(evaluation.metrics)]
    lines.append("")
    if evaluation.reference_note:
        lines += [evaluation.reference_note, ""]
    if evaluation.seen_as:
        lines += [f"**Warning: dataset seed {evaluation.seed} is the set's {evaluation.seen_as} seed; these images "
                  "were used to build the models, so this is not a held-out evaluation.**", ""]
    if evaluation.skipped:
        lines += [f"Skipped {len(evaluation.skipped)} image(s) or annotation(s) (listed at the end and in "
                  f"`{evaluation.stem}_skipped.csv`).", ""]
    missing = [a for a, n in counts.items() if n < MIN_IMAGES]
    if missing:
        lines += [f"No rows for {', '.join(f'`{a}`' for a in missing)}: fewer than {MIN_IMAGES} images.", ""]
    other = role_title(evaluation.compared[0]) if len(evaluation.compared) == 1 else "model"
    lines += [f"| analysis | n | method | metric | placement | model | {ref} | {other} | uniform map | centre map "
              f"| {other} - {evaluation.reference_role} | p | Holm p | this placement | verdict |", "|---" * 15 + "|"]
    for r in rows:
        lines.append(f"| {r['analysis']} | {r['n']} | {r['method']} | {r['metric']} | {r['placement']} | {role_title(r['model'])} "
                     f"| {r['baseline']:.3f} [{r['baseline_lo']:.3f}, {r['baseline_hi']:.3f}] "
                     f"| {r['model_mean']:.3f} [{r['model_lo']:.3f}, {r['model_hi']:.3f}] "
                     f"| {_reference_cell(r, 'uniform')} | {_reference_cell(r, 'centre')} "
                     f"| {r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}] | {r['p']:.2g} | {r['p_holm']:.2g} "
                     f"| {r['call']} | {r['verdict']} |")
    sharpness = concentration_means(evaluation)
    if sharpness:
        lines += ["", "Map concentration (mean share of pixels at or above half the map's maximum; lower = sharper):", "",
                  "| analysis | n | method | placement | " + " | ".join(role_title(r) for r in evaluation.roles) + " |",
                  "|---" * (4 + len(evaluation.roles)) + "|"]
        lines += [f"| {a} | {n} | {m} | {p} | " + " | ".join(f"{means[r]:.3f}" for r in evaluation.roles) + " |"
                  for a, m, p, n, means in sharpness]
    methods = list(evaluation.values)
    verdicts = {(r["analysis"], r["method"], r["metric"], r["model"]): r["verdict"] for r in rows}
    columns = [(a, m) for a in counts for m in methods if (a, m) in {(r["analysis"], r["method"]) for r in rows}]
    lines += ["", f"Localization verdicts against {ref} (both placements must agree; only `{PRIMARY}` decides):", "",
              "| metric | model | " + " | ".join(f"{a}: {m}" for a, m in columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for metric in dict.fromkeys(r["metric"] for r in rows if r["method"] in methods):
        for role in evaluation.compared:
            lines.append(f"| {metric} | {role_title(role)} | "
                         + " | ".join(verdicts.get((a, m, metric, role), "n/a") for a, m in columns) + " |")
    survivors = surviving(rows)
    lines += ["", f"Differences that survive Holm correction and agree across placements (`{PRIMARY}` images; "
              "accuracy: all images): " + ("none." if not survivors else ""), ""]
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
    per_image = atomic_write_text(out_dir / f"{evaluation.stem}_per_image.csv", lambda f: write_scores(f, evaluation.scores()))
    rows = summary_rows(evaluation)
    paths = [per_image, atomic_write_csv(out_dir / f"{evaluation.stem}_summary.csv", rows),
             atomic_write_text(out_dir / f"{evaluation.stem}_summary.md", markdown_table(evaluation, rows))]
    if evaluation.skipped:
        paths.append(atomic_write_text(out_dir / f"{evaluation.stem}_skipped.csv",
                                       lambda f: csv.writer(f).writerows([("image", "reason"), *evaluation.skipped])))
    return paths
