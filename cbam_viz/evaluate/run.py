"""Running an evaluation: batches from a dataset through every model of a set, into an :class:`Evaluation`."""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data import CLASSES, DIFFICULTIES
from ..models.sets import ModelSet
from ..training import TRAIN_SEED, VAL_SEED
from .datasets import GeneratedImages, Skipped, folder_dataset
from .scoring import Target, score_batch
from .summary import Evaluation, Score

EVAL_SEED = 3  # distinct from the training (1) and validation (2) dataset seeds


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


def score_dataset(models: dict, dataset: Dataset, methods: Sequence[str], road: bool, seed: int, batch_size: int,
                  workers: int, desc: str) -> tuple[list[Score], dict[str, tuple[int, int]], list[Skipped]]:
    """Score every item of ``dataset`` (items are :class:`Target` or :class:`Skipped`) in batches of
    consecutive items, loaded by ``workers`` processes, with a progress bar in images/s."""
    batches = [list(range(s, min(len(dataset), s + batch_size))) for s in range(0, len(dataset), batch_size)]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=_as_list)
    scores: list[Score] = []
    feature_shapes: dict[str, tuple[int, int]] = {}
    skipped: list[Skipped] = []
    with tqdm(total=len(dataset), desc=desc, unit="img", file=sys.stderr) as bar:
        for items in loader:
            targets = [t for t in items if isinstance(t, Target)]
            skipped += [t for t in items if isinstance(t, Skipped)]
            if targets:
                rows, shapes = score_batch(models, targets, methods, road, seed)
                scores += rows
                feature_shapes.update(shapes)
            bar.update(len(items))
    return scores, feature_shapes, skipped


def generator_of(model_set: ModelSet) -> str:
    """The generator difficulty the set was trained on (its manifest's ``generator``; older sets: "easy")."""
    return next(iter(model_set.entries.values()), {}).get("generator", "easy")


def _evaluate(model_set: ModelSet, images: Dataset, methods: list[str], road: bool, seed: int, batch_size: int,
              workers: int, skipped: list[Skipped], **fields) -> Evaluation:
    roles, note = ordered_roles(model_set)
    info = model_set.models[roles[0]].info
    scores, feature_shapes, failed = score_dataset({r: model_set.models[r] for r in roles}, images, methods, road, seed,
                                                   batch_size, workers, f"evaluating {model_set.name} ({', '.join(methods)})")
    if not scores:
        raise ValueError(f"no image could be scored ({len(skipped) + len(failed)} skipped"
                         + (f"; first: {(skipped + failed)[0].image}: {(skipped + failed)[0].reason}" if skipped + failed else "") + ")")
    return Evaluation.from_scores(scores, roles, methods, road, name=model_set.name, seed=seed,
                                  image_shape=(info.input_size, info.input_size), feature_shapes=feature_shapes,
                                  skipped=[tuple(s) for s in skipped + failed], reference_note=note, **fields)


def evaluate(model_set: ModelSet, methods: list[str], n: int = 1000, seed: int = EVAL_SEED, batch_size: int = 64,
             road: bool = True, allow_seen_seed: bool = False, workers: int = 0) -> Evaluation:
    """Run every method of every model of the set on ``n`` generated images (of the generator the set
    was trained on); the target is the ground-truth class.

    Refuses (ValueError) a set whose models do not know the generated classes, and a dataset seed
    whose images trained or validated the set, unless ``allow_seen_seed``; the result then records
    it in ``seen_as``.
    """
    for role, model in model_set.models.items():
        if model.info.class_names != list(CLASSES):
            raise ValueError(f"model {role!r} of set {model_set.name!r} was not trained on the generated shapes; "
                             "evaluate needs ground truth for its classes (use --images for your own labelled images)")
    seen_as = seen_seeds(model_set).get(seed)
    if seen_as and not allow_seen_seed:
        raise ValueError(f"dataset seed {seed} is the {seen_as} seed of set {model_set.name!r}: its images were used to build "
                         f"the models; use another seed (default {EVAL_SEED}) or --allow-training-seed to score them anyway")
    generator = generator_of(model_set)
    dataset = GeneratedImages(seed, n, model_set.info, DIFFICULTIES[generator])
    held_out = "" if seen_as else " that neither trained nor validated the set"
    return _evaluate(model_set, dataset, methods, road, seed, batch_size, workers, [], seen_as=seen_as,
                     source=f"generated images{held_out} ({generator} generator, dataset seed {seed})")


def evaluate_folder(model_set: ModelSet, images: Path, annotations: Path, fmt: str, methods: list[str],
                    seed: int = EVAL_SEED, batch_size: int = 64, road: bool = True, workers: int = 0) -> Evaluation:
    """Run every method of every model of the set on a folder of annotated images (``fmt``: one of
    :data:`cbam_viz.data.annotations.FORMATS`); the target is the annotated class. ``seed`` seeds
    ROAD's noise. Raises AnnotationError for annotations that cannot be read at all."""
    dataset, skipped = folder_dataset(images, fmt, annotations, model_set.class_names, model_set.info)
    source = f"annotated images of `{images}` ({fmt} annotations `{annotations}`)"
    return _evaluate(model_set, dataset, methods, road, seed, batch_size, workers, skipped, source=source,
                     dataset=images.resolve().name)
