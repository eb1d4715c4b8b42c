"""Command line: ``bash run.sh cli COMMAND ...`` (``python -m cbam_viz COMMAND ...`` with the project's venv active).

Arguments and input files are checked before torch and the models load (heavy modules are imported inside
the commands that need them), so a mistyped command answers at once."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import CLI

if TYPE_CHECKING:
    from .training import Recipe

GENERATORS = ["easy", "medium", "hard", "harder"]  # the names of data.DIFFICULTIES, without importing the generator


class CLIError(Exception):
    """A user error: printed as ``error: ...`` lines (indented lines continue the one above), exit status 2."""


def _load_models(args: argparse.Namespace) -> tuple[dict, str]:
    from .models import WeightsError
    from .models.config import ModelsConfigError
    from .models.sets import SetUnavailable, load_model_file, load_set

    if bool(args.baseline) != bool(args.cbam):
        raise CLIError("give both --baseline and --cbam, or neither (then --set is used)")
    try:
        if args.baseline:
            return {"baseline": load_model_file(args.baseline, None), "cbam": load_model_file(args.cbam, "cbam")}, "files"
        return load_set(args.set, user=_user_models(args)).models, args.set
    except (SetUnavailable, WeightsError, ModelsConfigError) as e:
        raise CLIError(str(e)) from None


def _user_models(args: argparse.Namespace) -> dict | None:
    """The content of ``--models FILE`` (your own models and sets), or None."""
    from .models.config import ModelsConfigError, read_models_config

    try:
        return read_models_config(args.models) if args.models else None
    except ModelsConfigError as e:
        raise CLIError(str(e)) from None


def _resolve_target(target: str | None, class_names: list[str]) -> int | None:
    if target is None:
        return None
    if target.isdigit() and int(target) < len(class_names):
        return int(target)
    matches = [i for i, name in enumerate(class_names) if name.lower() == target.lower()]
    if not matches:
        raise CLIError(f"unknown target class {target!r} (give a class index or one of the set's class names)")
    return matches[0]


def _check_layer(models: dict, layer: str | None) -> None:
    """A one-line error unless ``layer`` (None: the default) is a residual block of every model."""
    from .explain import check_target_layer

    if layer is None:
        return
    try:
        check_target_layer(models, layer)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _check_methods(methods: list[str]) -> None:
    from .explain.methods import METHOD_NAMES

    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown:
        raise CLIError(f"unknown method{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                       f"choose from {', '.join(METHOD_NAMES)}")


def _open_images(paths: list[str]) -> list:
    """Every image opened and checked, or one error line per bad image."""
    from .images import ImageError, open_image

    images, bad = [], []
    for path in paths:
        try:
            images.append(open_image(path))
        except ImageError as e:
            bad.append(str(e))
    if bad:
        raise CLIError("\n".join(bad))
    return images


def _domain_note(class_names: list[str], paths: list[str]) -> str | None:
    """The out-of-domain warning (demo models on images not known to be generated), printed on the console
    and drawn on the figure; with several images, naming those it concerns."""
    from .data.domain import out_of_domain, written_by_samples

    unknown = [Path(p).name for p in paths if out_of_domain(class_names, generated=written_by_samples(p))]
    if not unknown:
        return None
    note = out_of_domain(class_names, generated=False)
    return note if len(unknown) == len(paths) else f"{note} Not generated: {', '.join(unknown)}."


def _warn(note: str | None) -> None:
    if note:
        print(f"warning: {note} For real photos: {CLI} weights fetch imagenet, then --set imagenet.", file=sys.stderr)


def cmd_explain(args: argparse.Namespace) -> None:
    image, = _open_images([args.image])
    _check_methods([args.method])
    import numpy as np

    from .explain import explain, to_arrays
    from .fileio import atomic_write
    from .models import display_crop
    from .render import comparison_figure

    models, source = _load_models(args)
    _check_layer(models, args.layer)
    info = next(iter(models.values())).info
    class_names = info.class_names or [str(i) for i in range(info.num_classes)]
    results = explain(models, image, target=_resolve_target(args.target, class_names), method=args.method, target_layer=args.layer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    display = np.asarray(display_crop(image, info))
    titles = {role: model.info.title for role, model in models.items()}
    note = _domain_note(class_names, [args.image])
    figure, arrays = comparison_figure(display, results, class_names, titles, note), to_arrays(results)
    atomic_write(out / f"{stem}_{args.method}.png", lambda f: figure.save(f, format="PNG"))
    atomic_write(out / f"{stem}_{args.method}.npz", lambda f: np.savez_compressed(f, **arrays))
    _warn(note)
    for role, r in results.items():
        print(f"{role:8s} {titles[role]:28s} pred {class_names[r.prediction]} ({r.probs[r.prediction]:.1%}), explained {class_names[r.target]}")
    print(f"wrote {out / f'{stem}_{args.method}.png'} and .npz ({source})")


def cmd_figure(args: argparse.Namespace) -> None:
    from .fileio import figure_format

    out = Path(args.out)
    try:
        figure_format(out)
    except ValueError as e:
        raise CLIError(f"--out {e}") from None
    _check_methods([args.method])
    images = _open_images(args.images)
    import numpy as np

    from .explain import METHOD_NAMES, explain_batch
    from .models import display_crop
    from .render import GridRow, cam_grid, save_grid

    models, source = _load_models(args)
    _check_layer(models, args.layer)
    info = next(iter(models.values())).info
    class_names = info.class_names or [str(i) for i in range(info.num_classes)]
    results = explain_batch(models, images, method=args.method, target_layer=args.layer)
    rows = [GridRow(Path(path).name, np.asarray(display_crop(image, info, max_side=512)),
                    {role: results[role][i] for role in models}) for i, (path, image) in enumerate(zip(args.images, images))]
    titles = {role: model.info.title for role, model in models.items()}
    note = _domain_note(class_names, args.images)
    figure = cam_grid(rows, class_names, titles, METHOD_NAMES[args.method], note)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(figure, out)
    _warn(note)
    print(f"wrote {out} ({len(rows)} images x {len(models)} models of {source}, {METHOD_NAMES[args.method]})")


def train_recipe(args: argparse.Namespace) -> Recipe:
    """The training recipe that ``train``'s arguments name."""
    from .training import Recipe

    schedule = "onecycle" if args.ablation else args.schedule
    epochs = args.epochs if args.epochs is not None else (40 if schedule == "plateau" else 4)
    return Recipe(epochs=epochs, train_size=args.train_size, val_size=args.val_size, width=args.width,
                  depth=args.depth, size=args.size, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                  difficulty=args.difficulty, schedule=schedule, patience=args.patience, min_delta=args.min_delta,
                  lr_drops=args.lr_drops, init=args.init)


def cmd_train(args: argparse.Namespace) -> None:
    from .ablation import VARIANTS, run_ablation, write_table
    from .training import ROLES, Recipe, check_names, register_set, retrain_command, train_replicates, write_curves

    roles, variants = tuple(args.roles.split(",")), tuple(args.variants.split(","))
    names, known, what = (variants, VARIANTS, "variant") if args.ablation else (roles, ROLES, "role")
    try:  # before any image is rendered
        check_names(names, known, what)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.seeds < 1 or (args.ablation and args.seeds != 1):
        raise CLIError("--seeds must be at least 1 (and is not available with --ablation)")
    state_dir = Path(args.state_dir) if args.state_dir else None
    try:  # a recipe out of range, or a state file of an interrupted run that --resume would continue
        recipe = train_recipe(args)
        if args.ablation:
            rows = run_ablation(recipe, Path(args.out_dir or "runs/ablation"), args.eval_n, variants, args.device, state_dir)
            print(f"wrote {write_table(rows, recipe, args.eval_n, Path(args.table), full=Recipe())}")
            return
        out = Path(args.out_dir or "models")
        trained = train_replicates(recipe, out, args.name, args.seeds, roles, args.device, args.resume, state_dir,
                                   retrain_command(args.argv))
    except ValueError as e:
        raise CLIError(str(e)) from None
    for replicate, results in trained.items():
        register_set(results, out, replicate, replicates=[r for r in trained if r != args.name] if replicate == args.name else None)
        for role, metrics in results.items():
            print(f"{replicate:12s} {role:8s} held-out accuracy {metrics['val_accuracy']:.2%} (epoch {metrics['best_epoch']} of "
                  f"{metrics['epochs']}), test accuracy {metrics['test_accuracy']:.2%} ({metrics['train_seconds']:.0f} s)")
    print(f"wrote {out / 'manifest.json'} and " + " and ".join(map(str, write_curves(trained, Path(args.curves)))))


def cmd_samples(args: argparse.Namespace) -> None:
    from .data import DIFFICULTIES, write_samples

    paths = write_samples(args.out, args.n, args.seed, args.size, DIFFICULTIES[args.difficulty])
    print(f"wrote {len(paths)} images with masks and labels.csv to {args.out}")


def _annotation_format(args: argparse.Namespace) -> str:
    """``--format``, or guessed from ``--annotations``: .csv, .json (COCO), a folder of .xml (VOC) or with classes.csv (masks)."""
    path = Path(args.annotations)
    if not path.exists():
        raise CLIError(f"{path}: no such file or folder")
    if args.format:
        return args.format
    if path.suffix.lower() in (".csv", ".json", ".xml"):
        return {".csv": "csv", ".json": "coco", ".xml": "voc"}[path.suffix.lower()]
    if (path / "classes.csv").is_file():
        return "masks"
    if path.is_dir() and next(path.rglob("*.xml"), None):
        return "voc"
    raise CLIError(f"cannot tell the format of {path}; give --format csv|voc|coco|masks")


def cmd_evaluate(args: argparse.Namespace) -> None:
    methods = args.methods.split(",")
    _check_methods(methods)
    if args.batch_size < 1 or args.workers < 0:
        raise CLIError("--batch-size must be at least 1 and --workers at least 0")
    if bool(args.images) != bool(args.annotations):
        raise CLIError("give both --images DIR and --annotations PATH, or neither (then generated images are scored)")
    if args.images and not Path(args.images).is_dir():
        raise CLIError(f"{args.images}: no such folder")
    fmt = _annotation_format(args) if args.annotations else None
    from .data.annotations import AnnotationError, read_annotations
    from .evaluate import evaluate, evaluate_folder, markdown_table, summary_rows
    from .evaluate.run import check_seed
    from .evaluate.distributed import PartialFile, barrier, from_main, start, stop
    from .evaluate.sweep import parse_layers, sweep, sweep_rows, write_sweep
    from .models.sets import SetUnavailable, load_set, replicate_names

    shard = start(args.device)  # under torchrun: this process's rank; alone: rank 0 of 1
    user = _user_models(args)
    kept: list[PartialFile] = []  # a sweep's partial files: every rank removes its own once rank 0 has written the sweep
    sweep_files: list[Path] = []
    options = dict(batch_size=args.batch_size, road=not args.no_road, workers=args.workers, shard=shard, out=Path(args.out),
                   report=args.report)

    def load(name: str):
        return load_set(name, device=shard.device(args.device), user=user)

    timer = _RunTimer(shard.rank == 0)

    def run(model_set, layer: str | None):
        return timer.time(lambda: _run(model_set, layer))

    def _run(model_set, layer: str | None):
        if fmt:
            return evaluate_folder(model_set, Path(args.images), Path(args.annotations), fmt, methods, args.seed,
                                   layer=layer, **options)
        return evaluate(model_set, methods, args.n, args.seed, allow_seen_seed=args.allow_training_seed, layer=layer, **options)

    try:
        names = [args.set] if args.no_replicates else replicate_names(args.set, user=user)
        first = load(names[0])
        layers = parse_layers(args.layers, first)
        if fmt:  # unreadable annotations and seen seeds are refused before the plan is announced
            read_annotations(fmt, Path(args.annotations), Path(args.images))
        else:
            check_seed(first, args.seed, args.allow_training_seed)
        if shard.rank == 0:
            print(_plan(args, names, layers, methods, fmt), file=sys.stderr)
        timer.runs = len(names) * len(layers)
        if len(names) == 1 and len(layers) == 1:
            evaluations = [run(first, layers[0])]
            result = None
        else:
            options["kept"] = kept
            result = sweep(names, layers, lambda name: first if name == names[0] else load(name), run)
            evaluations = [e for by_layer in (result.runs.values() if result else []) for e in by_layer.values()]
            barrier(shard)  # every run's outputs are written
            written = False
            try:
                if result is not None:  # rank 0
                    sweep_files = write_sweep(result, Path(args.out), sweep_rows(result))
                written = True
            finally:  # no rank removes its partial files unless the sweep is written: a rerun reads them back
                if from_main(shard, written):
                    for partial in kept:
                        partial.remove()
    except (SetUnavailable, AnnotationError, ValueError) as e:
        raise CLIError(str(e)) from None
    finally:
        stop(shard)
    if not evaluations or evaluations[0] is None:  # another rank than 0: rank 0 reports
        return
    evaluation = evaluations[0]
    if evaluation.seen_as:
        print(f"warning: dataset seed {args.seed} is the set's {evaluation.seen_as} seed; the report says so", file=sys.stderr)
    if evaluation.skipped:
        print(f"skipped {len(evaluation.skipped)} image(s) or annotation(s); see the report", file=sys.stderr)
    files = [path for e in evaluations for path in e.files]
    if result is None:
        print(markdown_table(evaluation, summary_rows(evaluation)))
    else:
        print(sweep_files[1].read_text())  # the sweep's Markdown report
        files += sweep_files
    for path in files:
        print(f"wrote {path}")


def _plan(args: argparse.Namespace, names: list[str], layers: list, methods: list[str], fmt: str | None) -> str:
    """What ``evaluate`` is about to run, said before it starts (a full run with ROAD takes minutes)."""
    sets = (f"{len(names)} training seeds of set {names[0]!r} ({', '.join(names)}; --no-replicates: only {names[0]!r})"
            if len(names) > 1 else f"set {names[0]!r}")
    layer_text = ", ".join(layer or "the last block" for layer in layers)
    images = f"the images of {args.images}" if fmt else f"{args.n} generated images (seed {args.seed})"
    road = "without ROAD" if args.no_road else "with ROAD (the slowest metric; --no-road skips it)"
    runs = len(names) * len(layers)
    return (f"will run: {sets} x {len(layers)} layer(s) ({layer_text}) x {', '.join(methods)} on {images}, {road}"
            + (", then the HTML report" if args.report else "") + f": {runs} run(s), each with a progress bar and its "
            "time left" + ("; after the first, the time for all of them" if runs > 1 else ""))


class _RunTimer:
    """Times the evaluation runs of a sweep; after the first one computed from scratch (not read back, even in
    part, from an interrupted sweep's partial file), prints about how long the rest will take."""

    def __init__(self, speaks: bool):
        self.speaks, self.runs, self.done, self.told = speaks, 1, 0, False

    def time(self, run: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        evaluation = run()
        seconds, self.done = time.perf_counter() - started, self.done + 1
        left = self.runs - self.done
        if self.speaks and not self.told and left and evaluation is not None and not evaluation.resumed:
            self.told = True
            print(f"run {self.done} of {self.runs} took {seconds / 60:.1f} min: about {seconds * left / 60:.1f} min more "
                  f"for the other {left}", file=sys.stderr)
        return evaluation


def cmd_weights(args: argparse.Namespace) -> None:
    from .models.fetch import FetchError, describe, fetch_set

    try:
        if args.action == "fetch":
            fetch_set(args.set, Path(args.dir) if args.dir else None, args.mirror)
        else:
            print(describe(args.set))
    except (FetchError, OSError) as e:
        raise CLIError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=CLI, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("explain", help="side-by-side Grad-CAM of every model of a set (or two files) on one image")
    p.add_argument("image")
    p.add_argument("--set", default="demo", help="model set from models/manifest.json or --models (default: demo)")
    p.add_argument("--models", metavar="MODELS.toml", help="your own models and sets (README: 'Your own models')")
    p.add_argument("--baseline", help="baseline checkpoint (project format, or ImageNet ResNet-50 weights)")
    p.add_argument("--cbam", help="CBAM checkpoint (project format, or the authors' ResNet-50 + CBAM)")
    p.add_argument("--method", default="gradcam", help="CAM method (gradcam, gradcam++, xgradcam, layercam, hirescam, eigencam, scorecam, ...)")
    p.add_argument("--target", help="class index or name explained in every model (default: each model's top-1)")
    p.add_argument("--layer", help="target layer, e.g. layer4.2 (default: last block of layer4)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("figure", help="the paper's Grad-CAM figure: one row per image, the input and every model's CAM")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--set", "--pair", dest="set", default="demo", help="model set from models/manifest.json or --models (default: demo)")
    p.add_argument("--models", metavar="MODELS.toml", help="your own models and sets (README: 'Your own models')")
    p.add_argument("--method", default="gradcam", help="CAM method (default: gradcam)")
    p.add_argument("--layer", help="target layer, e.g. layer4.2 (default: last block of layer4)")
    p.add_argument("--out", required=True, help="the figure: a .pdf, .svg (vector text) or .png (300 dpi) file")
    p.set_defaults(func=cmd_figure, baseline=None, cbam=None)

    p = sub.add_parser("train", help="train the demo set (baseline, SE and CBAM: same recipe, data and batch order)",
                       allow_abbrev=False)  # the manifest records the command: options spelled out, as retrain_command reads them
    p.add_argument("--out-dir", help="where checkpoints go (default: models; runs/ablation with --ablation)")
    p.add_argument("--name", default="demo")
    p.add_argument("--ablation", action="store_true",
                   help="train the paper's ablation variants with this recipe and write their table (see --table)")
    p.add_argument("--variants", default="baseline,channel-avg,channel-max,channel-avgmax,spatial-k3,cbam,spatial-first,parallel",
                   help="ablation variants to train (default: all)")
    p.add_argument("--eval-n", type=int, default=1000, help="held-out images scored per ablation variant (default: 1000)")
    p.add_argument("--table", default="results/ablation.md", help="ablation table path (a .csv is written beside it)")
    p.add_argument("--depth", type=int, default=18)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--roles", default="baseline,se,cbam", help="comma-separated roles to train (default: baseline,se,cbam)")
    p.add_argument("--size", type=int, default=96, help="image size in pixels (default: 96)")
    p.add_argument("--difficulty", choices=GENERATORS, default="harder", help="generator difficulty (default: harder)")
    p.add_argument("--schedule", choices=["plateau", "onecycle"], default="plateau",
                   help="plateau (default): train until held-out accuracy stops improving (see --patience), dropping the "
                        "learning rate 10x at each plateau (--lr-drops); onecycle: a fixed --epochs (the ablation's)")
    p.add_argument("--epochs", type=int, help="plateau: the most epochs (default 40); onecycle: the number of epochs (default 4)")
    p.add_argument("--patience", type=int, default=3, help="plateau: epochs without a gain of --min-delta (default: 3)")
    p.add_argument("--min-delta", type=float, default=0.005, help="plateau: the gain in best held-out accuracy that counts "
                                                                  "(default: 0.005 = 0.5 points)")
    p.add_argument("--lr-drops", type=int, default=2, help="plateau: learning-rate drops before the last plateau (default: 2)")
    p.add_argument("--init", choices=["authors", "torchvision"], default="authors",
                   help="authors (default): CBAM's spatial gates start at 0.5 (BN weight 0, as in the authors' code); "
                        "torchvision: every BN weight starts at 1")
    p.add_argument("--state-dir", help="resumable per-epoch state (default: $CBAM_VIZ_TRAIN_STATE or ~/.cache/cbam-viz/train)")
    p.add_argument("--curves", default="results/demo_training.csv",
                   help="training curves per model and seed: this CSV, a PNG and a Markdown accuracy table beside it (default: results/demo_training.csv)")
    p.add_argument("--train-size", type=int, default=20_000)
    p.add_argument("--val-size", type=int, default=2_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="train K replicates of the set with seeds SEED..SEED+K-1 (same data and "
                                                       "recipe); the first keeps --name, the others are NAME-seed<s> (default: 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run exactly from its last finished epoch, "
                                                        "and keep models already trained with this recipe; without it every "
                                                        "model is trained from scratch and an interrupted run's state is "
                                                        "refused, never overwritten (--ablation always resumes)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="localization benchmark of every model of a set against its baseline, on held-out "
                                        "generated images or your own labelled images")
    p.add_argument("--set", "--pair", dest="set", default="demo", help="model set from models/manifest.json or --models (default: demo)")
    p.add_argument("--models", metavar="MODELS.toml", help="your own models and sets (README: 'Your own models')")
    p.add_argument("--methods", default="gradcam", help="comma-separated CAM methods")
    p.add_argument("--images", metavar="DIR", help="a folder of your own labelled images (with --annotations)")
    p.add_argument("--annotations", metavar="PATH", help="their boxes or masks: a CSV file, a folder of VOC XML, a COCO JSON, "
                                                         "or a folder of mask PNGs with classes.csv")
    p.add_argument("--format", choices=["csv", "voc", "coco", "masks"], help="annotation format (default: guessed from --annotations)")
    p.add_argument("-n", type=int, default=1000, help="number of held-out generated images")
    p.add_argument("--seed", type=int, default=3, help="dataset seed of the generated images (training used 1, validation 2: "
                                                      "refused); ROAD's noise seed for --images")
    p.add_argument("--allow-training-seed", action="store_true",
                   help="score a training or validation seed anyway; the report carries a warning")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="processes loading images (0: load in the main process; default: 1)")
    p.add_argument("--no-road", action="store_true", help="skip the ROAD score (the slowest metric)")
    p.add_argument("--layers", metavar="L1,L2|all|stages",
                   help="target layers: block names (layer3.1,...), all (every block) or stages (the last block of each "
                        "stage) (default: the last block); with more than one layer or a replicated set, also "
                        "<set>_sweep.md/.csv/.png/.html (<set>_<folder>_sweep.* with --images)")
    p.add_argument("--no-replicates", action="store_true",
                   help="evaluate only this set, not the replicate sets (other training seeds) its manifest lists")
    p.add_argument("--report", action="store_true", help="also write <set>_report.html: the summary and a gallery of the "
                                                         "images where the models disagree most (opens offline)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", default="results", help="folder for the CSV and Markdown files (and the partial files an "
                                                    "interrupted run resumes from)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("samples", help="write generated images with masks and labels as PNG files")
    p.add_argument("--out", required=True)
    p.add_argument("-n", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--difficulty", choices=GENERATORS, default="harder", help="generator difficulty (default: harder, the demo set's)")
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("weights", help="published ImageNet weights: where they come from, and downloading them")
    weights = p.add_subparsers(dest="action", required=True)
    w = weights.add_parser("fetch", help="download, verify and register a set's published weights (the only command that downloads)")
    w.add_argument("set", nargs="?", default="imagenet", help="model set (default: imagenet)")
    w.add_argument("--dir", help="where to put the files (default: $CBAM_VIZ_WEIGHTS or ~/.cache/cbam-viz/weights)")
    w.add_argument("--mirror", help="mirror base URL: each file is fetched from MIRROR/<file name> (default: $CBAM_VIZ_MIRROR)")
    w.set_defaults(func=cmd_weights)
    w = weights.add_parser("list", help="where each model of a set comes from, its published accuracy, and the file found now")
    w.add_argument("set", nargs="?", default="imagenet", help="model set (default: imagenet)")
    w.set_defaults(func=cmd_weights)

    from .study.cli import add_study_commands

    add_study_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: `train` records it (retrain_command)
    try:
        return args.func(args) or 0
    except CLIError as e:
        for line in str(e).splitlines():  # one line per problem (figure: one per bad image)
            print(line if line[:1].isspace() else f"error: {line}", file=sys.stderr)
        return 2
