"""Running an evaluation: batches from a dataset through every model of a set, into an :class:`Evaluation`."""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data import CLASSES, DIFFICULTIES
from ..explain import check_target_layer, default_target_layer
from ..models.sets import ModelSet
from ..training import TRAIN_SEED, VAL_SEED
from .datasets import GeneratedImages, Skipped, folder_dataset
from .distributed import PartialFile, Shard, barrier, gather, merge
from .scoring import Target, score_batch
from .report import write_report
from .summary import COLUMNS, Evaluation, Score, output_stem, write_outputs

EVAL_SEED = 3  # distinct from the training (1) and validation (2) dataset seeds


def check_seed(model_set: ModelSet, seed: int, allow_seen_seed: bool = False) -> str | None:
    """What ``seed`` was to ``model_set`` ("training", "validation") or None; ValueError for a seen seed
    unless ``allow_seen_seed``."""
    seen_as = seen_seeds(model_set).get(seed)
    if seen_as and not allow_seen_seed:
        raise ValueError(f"dataset seed {seed} is the {seen_as} seed of set {model_set.name!r}: its images were used to build "
                         f"the models; use another seed (default {EVAL_SEED}) or --allow-training-seed to score them anyway")
    return seen_as


def seen_seeds(model_set: ModelSet) -> dict[int, str]:
    """Dataset seeds whose images were used to build ``model_set``: seed -> "training" or "validation"."""
    seeds = {TRAIN_SEED: "training", VAL_SEED: "validation"}
    for entry in model_set.entries.values():
        for key, use in (("train_dataset_seed", "training"), ("heldout_dataset_seed", "validation")):
            if key in entry:
                seeds[entry[key]] = use
    return seeds


def ordered_roles(model_set: ModelSet) -> tuple[list[str], str]:
    """The set's roles with the reference first (``baseline``, else the first model), and a note when
    the set has no baseline."""
    roles = model_set.roles
    if "baseline" in roles:
        return ["baseline", *(r for r in roles if r != "baseline")], ""
    return roles, f"Set `{model_set.name}` has no 'baseline' model: every model is compared with its first, '{roles[0]}'."


def _as_list(items: list) -> list:
    return items


@dataclass
class Job:
    """How to run: batch size, loader processes, this process's shard, where the outputs and partial
    results go (None: kept in memory only, nothing resumes), whether an HTML report is written there, and
    ``kept``: None to remove a run's partial file once its outputs are written, or a list that collects
    the (closed) partial files instead (a sweep removes them once its own files are written, so a sweep resumed
    after an interruption recomputes none of its finished runs)."""

    batch_size: int = 64
    workers: int = 0
    shard: Shard = field(default_factory=Shard)
    out: Path | None = None
    report: bool = False
    kept: list[PartialFile] | None = None


def score_dataset(models: dict, dataset: Dataset, methods: Sequence[str], road: bool, seed: int, job: Job,
                  desc: str, partial: PartialFile | None = None, layer: str | None = None) -> list[dict[str, Any]] | None:
    """Score this rank's batches of ``dataset`` (items are :class:`Target` or :class:`Skipped`;
    batches of consecutive items, loaded by ``job.workers`` processes) with a progress bar in images/s;
    batches already in ``partial`` are not recomputed, new ones are appended to it; CAMs at ``layer``
    (None: each model's last block). Returns every
    rank's finished batches (``batch``, ``scores``, ``skipped``, ``shapes``) in batch order on rank 0, None elsewhere."""
    size, shard = job.batch_size, job.shard
    batches = [list(range(s, min(len(dataset), s + size))) for s in range(0, len(dataset), size)]
    mine = [b for b in range(len(batches)) if b % shard.world == shard.rank]
    done = {b: batch for b, batch in (partial.load() if partial else {}).items() if b in mine}
    todo = [b for b in mine if b not in done]
    finished = sum(len(batches[b]) for b in done)
    if finished:
        print(f"resuming: {finished} image(s) already scored in {partial.path.name}", file=sys.stderr)
    loader = DataLoader(dataset, batch_sampler=[batches[b] for b in todo], num_workers=job.workers, collate_fn=_as_list)
    label = f"{desc} [rank {shard.rank}/{shard.world}]" if shard.world > 1 else desc
    with tqdm(total=sum(len(batches[b]) for b in mine), initial=finished, desc=label, unit="img", file=sys.stderr) as bar:
        for b, items in zip(todo, loader):
            targets = [t for t in items if isinstance(t, Target)]
            rows, shapes = score_batch(models, targets, methods, road, seed, layer) if targets else ([], {})
            done[b] = {"batch": b, "scores": [list(r) for r in rows], "shapes": shapes,
                       "skipped": [list(t) for t in items if isinstance(t, Skipped)]}
            if partial:
                partial.append(done[b])
            bar.update(len(items))
    if partial:
        partial.close()
    gathered = gather(shard, done)
    return merge(gathered) if gathered is not None else None


def _settings(model_set: ModelSet, roles: list[str], methods: Sequence[str], road: bool, seed: int, job: Job,
              data: dict[str, Any], layer: str) -> dict[str, Any]:
    """What decides a run's per-image results: a partial file of other settings is not resumed."""
    models = {r: model_set.entries.get(r, {}).get("sha256") or model_set.entries.get(r, {}).get("file")
              or model_set.models[r].info.title for r in roles}
    return json.loads(json.dumps({"set": model_set.name, "models": models, "methods": list(methods), "road": road,
                                  "seed": seed, "batch_size": job.batch_size, "data": data, "layer": layer,
                                  "columns": list(COLUMNS)}))  # a partial file of an older row layout is not resumed


def resolve_layer(model_set: ModelSet, layer: str | None) -> tuple[str, bool]:
    """The target layer (None: the last block) and whether it is a non-default one (then it is part of
    the output names); ValueError unless it is a residual block of every model."""
    default = default_target_layer(next(iter(model_set.models.values())))
    layer = layer or default
    check_target_layer(model_set.models, layer)
    return layer, layer != default


def _evaluate(model_set: ModelSet, images: Dataset, methods: list[str], road: bool, seed: int, job: Job,
              skipped: list[Skipped], data: dict[str, Any], dataset: str = "", layer: str | None = None,
              **fields) -> Evaluation | None:
    """Score ``images`` and arrange the results (rank 0; None on the other ranks); with ``job.out``,
    resume from and append to this rank's partial file, write the outputs there and then remove it."""
    roles, note = ordered_roles(model_set)
    info = model_set.models[roles[0]].info
    layer, named = resolve_layer(model_set, layer)
    stem = output_stem(model_set.name, dataset, layer if named else "")
    partial = None
    if job.out is not None:
        path = job.out / f"{stem}_partial-{job.shard.rank}of{job.shard.world}.jsonl"
        partial = PartialFile(path, _settings(model_set, roles, methods, road, seed, job, data, layer))
    batches = score_dataset({r: model_set.models[r] for r in roles}, images, methods, road, seed, job,
                            f"evaluating {model_set.name} at {layer} ({', '.join(methods)})", partial, layer)
    evaluation = None
    if batches is not None:
        scores = [Score(*row) for batch in batches for row in batch["scores"]]
        failed = [Skipped(*item) for batch in batches for item in batch["skipped"]]
        shapes = {role: tuple(shape) for batch in batches for role, shape in batch["shapes"].items()}
        if not scores:
            problems = skipped + failed
            raise ValueError(f"no image could be scored ({len(problems)} skipped"
                             + (f"; first: {problems[0].image}: {problems[0].reason}" if problems else "") + ")")
        evaluation = Evaluation.from_scores(scores, roles, methods, road, name=model_set.name, seed=seed, dataset=dataset,
                                            image_shape=(info.input_size, info.input_size), feature_shapes=shapes,
                                            skipped=[tuple(s) for s in skipped + failed], reference_note=note, layer=layer,
                                            layer_in_name=named, resumed=bool(partial and partial.loaded), **fields)
        if job.out is not None:
            evaluation.files = write_outputs(evaluation, job.out)
            if job.report:
                evaluation.files.append(write_report(evaluation, model_set.models, images, model_set.class_names, job.out))
    if partial is not None:
        if job.kept is not None:
            partial.close()
            job.kept.append(partial)
        else:
            barrier(job.shard)  # the outputs exist before any partial file goes
            partial.remove()
    return evaluation


def evaluate(model_set: ModelSet, methods: list[str], n: int = 1000, seed: int = EVAL_SEED, batch_size: int = 64,
             road: bool = True, allow_seen_seed: bool = False, workers: int = 0, shard: Shard | None = None,
             out: Path | None = None, report: bool = False, layer: str | None = None,
             kept: list[PartialFile] | None = None) -> Evaluation | None:
    """Run every method of every model of the set on ``n`` generated images (of the generator the set
    was trained on); the target is the ground-truth class.

    Refuses (ValueError) a set whose models do not know the generated classes, and a dataset seed
    whose images trained or validated the set, unless ``allow_seen_seed``; the result then records
    it in ``seen_as``. With ``out``, the outputs (and with ``report`` the HTML report) are written
    there and an interrupted run resumes from its partial file; ``shard``: this process's rank under
    torchrun (:func:`cbam_viz.evaluate.distributed.start`), which returns the result on rank 0 only.
    ``layer``: the CAMs' target layer (None: the last block; another one is part of the output names).
    ``kept``: see :class:`Job`.
    """
    for role, model in model_set.models.items():
        if model.info.class_names != list(CLASSES):
            raise ValueError(f"model {role!r} of set {model_set.name!r} was not trained on the generated shapes; "
                             "evaluate needs ground truth for its classes (use --images for your own labelled images)")
    seen_as = check_seed(model_set, seed, allow_seen_seed)
    generator = model_set.generator
    dataset = GeneratedImages(seed, n, model_set.info, DIFFICULTIES[generator])
    held_out = "" if seen_as else " that neither trained nor validated the set"
    data = {"generated": n, "generator": generator, "size": model_set.info.input_size}
    job = Job(batch_size, workers, shard or Shard(), out, report, kept)
    source = f"generated images{held_out} ({generator} generator, dataset seed {seed})"
    return _evaluate(model_set, dataset, methods, road, seed, job, [], data, layer=layer, seen_as=seen_as, source=source)


def evaluate_folder(model_set: ModelSet, images: Path, annotations: Path, fmt: str, methods: list[str],
                    seed: int = EVAL_SEED, batch_size: int = 64, road: bool = True, workers: int = 0,
                    shard: Shard | None = None, out: Path | None = None, report: bool = False,
                    layer: str | None = None, kept: list[PartialFile] | None = None) -> Evaluation | None:
    """Run every method of every model of the set on a folder of annotated images (``fmt``: one of
    :data:`cbam_viz.data.annotations.FORMATS`); the target is the annotated class. ``seed`` seeds
    ROAD's noise; ``shard``, ``out``, ``report``, ``layer`` and ``kept`` as for :func:`evaluate`. Raises AnnotationError
    for annotations that cannot be read at all."""
    dataset, skipped = folder_dataset(images, fmt, annotations, model_set.class_names, model_set.info)
    source = f"annotated images of `{images}` ({fmt} annotations `{annotations}`)"
    data = {"images": str(images.resolve()), "annotations": str(annotations.resolve()), "format": fmt, "items": len(dataset)}
    job = Job(batch_size, workers, shard or Shard(), out, report, kept)
    return _evaluate(model_set, dataset, methods, road, seed, job, skipped, data, dataset=images.resolve().name,
                     layer=layer, source=source)
