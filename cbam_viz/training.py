"""Train the demo set: a baseline, an SE and a CBAM ResNet with one recipe, one seed, one dataset.

Every model sees the same pre-rendered images in the same order (the shuffle and the flips are
seeded per epoch and step), so the only difference between them is the attention module.

Two schedules. ``"plateau"`` (the demo set's): one warm-up epoch, then a constant learning rate
divided by 10 each time the held-out accuracy reaches a plateau (:func:`plateaued`), at most
``lr_drops`` times; the next plateau ends training, and the epoch with the best held-out accuracy
is kept. ``"onecycle"``: a fixed number of epochs under a one-cycle schedule (the ablation's short budget), keeping the last.

Training is resumable exactly: after every epoch a state file (outside the repository, in
``state_dir``) holds model, optimizer, schedule, history and the best weights so far; ``resume=True``
continues from it, and an interrupted + resumed run equals an uninterrupted one bit for bit.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import CLI
from .data import CLASSES, DIFFICULTIES, MEAN, STD, render_sample
from .fileio import atomic_write, atomic_write_csv, atomic_write_text
from .models import ResNet, build_resnet, save_checkpoint
from .models.attention import authors_init
from .models.sets import role_title

TRAIN_SEED, VAL_SEED, TEST_SEED = 1, 2, 3  # dataset seeds: training, held-out (model selection), test (`evaluate`'s)
SCHEDULES = ("plateau", "onecycle")
INITS = ("authors", "torchvision")
# What each role of the demo set is: build_resnet's attention argument and its options.
ROLES: dict[str, tuple[str | None, dict]] = {"baseline": (None, {}), "se": ("se", {}), "cbam": ("cbam", {})}


def default_state_dir() -> Path:
    """Where resumable training state lives: ``$CBAM_VIZ_TRAIN_STATE``, else ``~/.cache/cbam-viz/train``."""
    return Path(os.environ.get("CBAM_VIZ_TRAIN_STATE") or Path.home() / ".cache" / "cbam-viz" / "train")


@dataclass
class Recipe:
    depth: int = 18
    width: int = 16
    size: int = 96
    train_size: int = 20_000
    val_size: int = 2_000
    test_size: int = 2_000
    epochs: int = 40  # "plateau": the most epochs; "onecycle": the length
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0
    difficulty: str = "harder"
    schedule: str = "plateau"
    patience: int = 3  # plateau: epochs without a gain of min_delta in the best held-out accuracy
    min_delta: float = 0.005
    lr_drops: int = 2
    init: str = "authors"  # "authors": every spatial gate's BN weight starts at 0 (gates at 0.5); "torchvision": at 1

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.difficulty, DIFFICULTIES, "difficulty"), (self.schedule, SCHEDULES, "schedule"),
                                     (self.init, INITS, "init")):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {list(allowed)}, got {value!r}")
        limits = [("epochs", self.epochs >= 1, "at least 1"), ("patience", self.patience >= 1, "at least 1"),
                  ("lr_drops", self.lr_drops >= 0, "at least 0"), ("min_delta", self.min_delta >= 0, "at least 0"),
                  ("lr", self.lr > 0, "above 0"), ("weight_decay", self.weight_decay >= 0, "at least 0"),
                  ("train_size", self.train_size >= 1, "at least 1"), ("val_size", self.val_size >= 1, "at least 1"),
                  ("test_size", self.test_size >= 0, "at least 0"), ("width", self.width >= 1, "at least 1"),
                  ("size", self.size >= 16, "at least 16"),
                  ("batch_size", 1 <= self.batch_size <= self.train_size, "between 1 and train_size")]
        bad = [f"{name} must be {rule} (got {getattr(self, name)})" for name, ok, rule in limits if not ok]
        if bad:
            raise ValueError("; ".join(bad))


def generator_knobs(recipe: Recipe) -> dict:
    """The knobs behind the recipe's generator name, kept with every checkpoint so that a preset changed
    under the same name is never resumed or kept as if it were the same data."""
    return json.loads(json.dumps(asdict(DIFFICULTIES[recipe.difficulty])))


def render_tensors(seed: int, n: int, size: int, difficulty: str = "hard") -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generated images as a normalized float tensor, with their labels."""
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for i in tqdm(range(n), desc=f"rendering {n} images (seed {seed})", leave=False, file=sys.stderr):
        sample = render_sample(seed, i, size, difficulty=DIFFICULTIES[difficulty])
        images[i], labels[i] = np.asarray(sample.image), sample.label
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean, std = torch.tensor(MEAN)[None, :, None, None], torch.tensor(STD)[None, :, None, None]
    return (x - mean) / std, torch.from_numpy(labels)


def build_demo_model(recipe: Recipe, attention: str | None, options: dict | None = None, title: str | None = None) -> ResNet:
    """A freshly initialised model (seeded by the recipe, ``recipe.init`` applied) that knows the generated classes.
    torch's global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = build_resnet(recipe.depth, attention, num_classes=len(CLASSES), width=recipe.width, stem="small", **(options or {}))
    if recipe.init == "authors":
        authors_init(model)
    info = model.info
    info.class_names, info.input_size, info.resize, info.mean, info.std = list(CLASSES), recipe.size, None, MEAN, STD
    suffix = title or (f" + {role_title(attention)}" if attention else "")
    info.name = f"ResNet-{recipe.depth}/w{recipe.width}{suffix} (demo)"
    return model


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    return float(correct_mask(model, x, y, batch_size).float().mean())


@torch.no_grad()
def correct_mask(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Per image: whether ``model`` (in eval mode) classifies it correctly."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() == y[i:i + batch_size]
                      for i in range(0, len(x), batch_size)])


def plateaued(accuracies: Sequence[float], patience: int, min_delta: float) -> bool:
    """True when the best of ``accuracies`` has not risen by ``min_delta`` over the last ``patience`` epochs
    (``accuracies``: held-out accuracy per epoch since the last learning-rate change). A gain of exactly
    ``min_delta`` counts as a gain, whatever the float rounding of the accuracies."""
    if len(accuracies) <= patience:
        return False
    return max(accuracies) - max(accuracies[:-patience]) < min_delta - 1e-6


class _Schedule:
    """The learning rate per step. ``"plateau"``: linear warm-up over the first epoch, then ``lr``
    divided by 10 per drop; ``"onecycle"``: torch's OneCycleLR over ``recipe.epochs``."""

    def __init__(self, recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
        self.recipe, self.optimizer, self.steps_per_epoch = recipe, optimizer, steps_per_epoch
        self.onecycle = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch,
                                                             pct_start=0.2) if recipe.schedule == "onecycle" else None)
        self.drops, self.since = 0, 0  # learning-rate drops so far; epoch after which the last one happened
        self.ended: str | None = None  # what ended training: "plateau" (the rule) or "epochs" (the most epochs)

    def set_lr(self, epoch: int, step: int) -> None:
        if self.onecycle is None:
            warm = min(1.0, (epoch * self.steps_per_epoch + step + 1) / self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = self.recipe.lr * warm * 0.1 ** self.drops

    def after_step(self) -> None:
        if self.onecycle is not None:
            self.onecycle.step()

    def after_epoch(self, history: list[dict]) -> bool:
        """Update the schedule from the history; True when training should stop (``ended`` says why)."""
        r = self.recipe
        rule = self.onecycle is None and plateaued([h["val_accuracy"] for h in history[self.since:]], r.patience, r.min_delta)
        if rule and self.drops == r.lr_drops:
            self.ended = "plateau"
        elif len(history) >= r.epochs:
            self.ended = "epochs"
        elif rule:
            self.drops, self.since = self.drops + 1, len(history)
        return self.ended is not None

    def state_dict(self) -> dict:
        return {"drops": self.drops, "since": self.since, "ended": self.ended,
                **({"onecycle": self.onecycle.state_dict()} if self.onecycle else {})}

    def load_state_dict(self, state: dict) -> None:
        self.drops, self.since, self.ended = state["drops"], state["since"], state.get("ended")
        if self.onecycle is not None:
            self.onecycle.load_state_dict(state["onecycle"])


def _train_epoch(model, optimizer, schedule: _Schedule, recipe: Recipe, epoch: int, x, y, device: str, desc: str) -> tuple[float, float]:
    """One epoch in the recipe's batch order; returns mean training loss and accuracy."""
    model.train()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(recipe.seed * 1000 + epoch))
    steps = len(x) // recipe.batch_size
    seen = correct = 0
    loss_sum = 0.0
    bar = tqdm(range(steps), desc=desc, file=sys.stderr)
    for step in bar:
        idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
        xb, yb = x[idx].to(device), y[idx].to(device)
        flip = torch.rand(len(idx), generator=torch.Generator().manual_seed(epoch * 100_000 + step)) < 0.5
        xb = torch.where(flip.to(device)[:, None, None, None], xb.flip(3), xb)  # the shapes' classes are mirror-invariant
        schedule.set_lr(epoch, step)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.after_step()
        seen += len(idx)
        correct += int((logits.argmax(1) == yb).sum())
        loss_sum += loss.item() * len(idx)
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.3f}")
    return loss_sum / seen, correct / seen


def _copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def state_file(out: Path, state_dir: Path | None = None) -> Path:
    """Where the resumable state of the model trained into ``out`` lives: named after the model file and
    its folder, so that runs into different folders never continue (or delete) each other's state."""
    digest = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:10]
    return (state_dir or default_state_dir()) / f"{out.stem}-{digest}.state.pt"


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and values: written into a trained model's metrics,
    so that a finished file kept on resume is known to hold the weights it was saved with."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _kept(done: Path, recipe: Recipe) -> dict | None:
    """The metrics of ``done`` when it is a finished model of ``recipe`` (ValueError when its weights no longer
    match the digest written with them); None otherwise."""
    if not done.is_file():
        return None
    checkpoint = torch.load(done, weights_only=True)
    metrics = checkpoint.get("metrics", {})
    if metrics.get("recipe") != asdict(recipe) or metrics.get("generator_knobs") != generator_knobs(recipe):
        return None
    if "weights_sha256" in metrics and weights_digest(checkpoint["state_dict"]) != metrics["weights_sha256"]:
        raise ValueError(f"{done} is damaged: its weights differ from those it was saved with; delete it to train it again")
    return metrics


def staged_file(out: Path) -> Path:
    """Where a model finished by a run that is not (beside ``out``) waits: all the models of a run replace
    the old ones together once the last is done (:func:`publish`), so a set keeps loading, as its manifest
    describes it, while it is retrained."""
    return out.with_name(out.name + ".staged")


def publish(outs: Iterable[Path]) -> None:
    """Move every staged model of ``outs`` into place (one atomic rename each; a model kept as it was has none)."""
    for out in outs:
        staged = staged_file(out)
        if staged.is_file():
            os.replace(staged, out)


def refuse_interrupted(outs: Sequence[Path], state_dir: Path | None = None) -> None:
    """ValueError naming every model of ``outs`` that an interrupted run left, which training from scratch
    would overwrite (its state, or the model it finished but did not publish): checked before a run starts,
    so that no finished model is retrained first."""
    found = [path for out in outs for path in (state_file(out, state_dir), staged_file(out)) if path.is_file()]
    if found:
        raise ValueError("an interrupted run left " + ", ".join(str(p) for p in found)
                         + ": continue it with resume (train --resume), or delete those files to start over")


_DETERMINISTIC_LOCK = threading.Lock()
_deterministic_runs = {"count": 0, "caller": (False, False)}  # runs under way; the setting the first one found


@contextmanager
def _deterministic() -> Iterator[None]:
    """torch's deterministic algorithms (a process-wide setting) while any training run is under way; the
    last run to end restores the setting the first one found, so runs in several threads do not switch it
    off under each other."""
    with _DETERMINISTIC_LOCK:
        if _deterministic_runs["count"] == 0:
            _deterministic_runs["caller"] = (torch.are_deterministic_algorithms_enabled(),
                                             torch.is_deterministic_algorithms_warn_only_enabled())
            torch.use_deterministic_algorithms(True, warn_only=True)
        _deterministic_runs["count"] += 1
    try:
        yield
    finally:
        with _DETERMINISTIC_LOCK:
            _deterministic_runs["count"] -= 1
            if _deterministic_runs["count"] == 0:
                enabled, warn_only = _deterministic_runs["caller"]
                torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def train(recipe: Recipe, attention: str | None, out: Path, data: tuple, val: tuple, test: tuple | None = None,
          device: str = "cpu", resume: bool = False, options: dict | None = None, title: str | None = None,
          state_dir: Path | None = None, staged: bool = False) -> dict:
    """Train one model (``attention`` and CBAM ``options`` as for ``build_resnet``) under the recipe's
    schedule; write the best held-out epoch's weights to ``out`` (with ``staged``: to :func:`staged_file`,
    for :func:`publish`); return its metrics, with the accuracy on ``test`` (images no step of training or
    selection saw) when given. An interrupted run's state (:func:`state_file`) is continued with
    ``resume=True`` and never overwritten without it; with ``resume``, a model already trained with this
    recipe (staged or in place) is kept."""
    state_path = state_file(out, state_dir)
    legacy = state_path.with_name(f"{out.stem}.state.pt")  # the name before 2026-12-07: the model file's only
    if resume and not state_path.is_file() and legacy.is_file():
        print(f"resuming from {legacy}, a state file named before state files carried their folder", file=sys.stderr)
        state_path = legacy
    if not resume:
        refuse_interrupted([out], state_dir)
    target = staged_file(out) if staged else out
    for done in dict.fromkeys((target, out)) if resume and not state_path.is_file() else ():
        if (metrics := _kept(done, recipe)) is not None:
            print(f"{done.name} is already trained with this recipe; keeping it", file=sys.stderr)
            return metrics
    x, y = data
    model = build_demo_model(recipe, attention, options, title).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay, nesterov=True)
    schedule = _Schedule(recipe, optimizer, len(x) // recipe.batch_size)
    history: list[dict] = []
    best: dict = {"epoch": 0, "accuracy": -1.0, "state": None}
    done = False
    if resume and state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        if (state["recipe"] != asdict(recipe) or state.get("generator_knobs") != generator_knobs(recipe)
                or state["attention"] != attention):
            raise ValueError(f"{state_path} was written by another recipe or model; delete it to start over")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, best, done = state["history"], state["best"], state["done"]
        print(f"resuming {out.name} after epoch {len(history)}", file=sys.stderr)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with _deterministic():
        while not done:
            epoch = len(history)
            began = time.perf_counter()
            loss, train_acc = _train_epoch(model, optimizer, schedule, recipe, epoch, x, y, device,
                                           f"{out.stem} epoch {epoch + 1}/{recipe.epochs}")
            val_acc = accuracy(model, *val)
            history.append({"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss,
                            "train_accuracy": train_acc, "val_accuracy": val_acc, "seconds": round(time.perf_counter() - began, 1)})
            if val_acc > best["accuracy"] or recipe.schedule == "onecycle":  # a fixed schedule keeps its last epoch
                best = {"epoch": epoch + 1, "accuracy": val_acc, "state": _copy_state(model)}
            done = schedule.after_epoch(history)
            print(f"{out.stem} epoch {epoch + 1}: loss {loss:.4f}, held-out {val_acc:.2%} (best {best['accuracy']:.2%} "
                  f"at {best['epoch']}){' - done' if done else ''}", file=sys.stderr)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                     "history": history, "best": best, "done": done, "recipe": asdict(recipe),
                     "generator_knobs": generator_knobs(recipe), "attention": attention}
            atomic_write(state_path, lambda f: torch.save(state, f))
    model.load_state_dict(best["state"])
    metrics = {"val_accuracy": best["accuracy"], "val_size": len(val[0]), "val_seed": VAL_SEED, "train_seed": TRAIN_SEED,
               "best_epoch": best["epoch"], "epochs": len(history), "lr_drops": schedule.drops,
               "plateau": schedule.ended == "plateau",
               "train_seconds": round(sum(h["seconds"] for h in history), 1), "history": history, "recipe": asdict(recipe),
               "generator_knobs": generator_knobs(recipe), "weights_sha256": weights_digest(model.state_dict())}
    if test is not None:
        hits = correct_mask(model, *test)
        metrics.update(test_accuracy=float(hits.float().mean()), test_size=len(hits), test_seed=TEST_SEED,
                       test_correct=hits.tolist())
    save_checkpoint(model.cpu(), target, metrics=metrics)
    state_path.unlink(missing_ok=True)
    print(f"{target.name}: best held-out accuracy {best['accuracy']:.2%} at epoch {best['epoch']} of {len(history)}"
          + (f"; test accuracy {metrics['test_accuracy']:.2%}" if test is not None else ""), file=sys.stderr)
    return metrics


def check_names(names: Sequence[str], known: Iterable[str], what: str) -> None:
    """ValueError naming every entry of ``names`` that is not in ``known`` (roles, ablation variants)."""
    known = list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(known)}")


def training_data(recipe: Recipe) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """The recipe's training, held-out (model selection) and test images, rendered."""
    return tuple(render_tensors(seed, n, recipe.size, recipe.difficulty) for seed, n in
                 ((TRAIN_SEED, recipe.train_size), (VAL_SEED, recipe.val_size), (TEST_SEED, recipe.test_size)))


def train_set(recipe: Recipe, out_dir: Path, name: str = "demo", roles: tuple[str, ...] = tuple(ROLES),
              device: str = "cpu", resume: bool = False, rendered: tuple | None = None,
              state_dir: Path | None = None, command: str = "", publish_models: bool = True) -> dict[str, dict]:
    """Train every role (baseline, se, cbam) with the same recipe and data (``rendered``: the
    recipe's :func:`training_data`, rendered here when None); returns metrics per role, each with
    ``command``: the pasteable command that trains it again (:func:`retrain_command`; none from a library call).
    The models replace those in ``out_dir`` together, when the last is trained (unless ``publish_models``
    is False: then the caller calls :func:`publish`)."""
    check_names(roles, ROLES, "role")
    if not resume:
        refuse_interrupted([out_dir / f"{name}-{role}.pt" for role in roles], state_dir)
    data, val, test = rendered or training_data(recipe)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for role in roles:
        attention, options = ROLES[role]
        metrics = train(recipe, attention, out_dir / f"{name}-{role}.pt", data, val, test, device, resume, options,
                        state_dir=state_dir, staged=True)
        results[role] = {**metrics, "command": command, "file": f"{name}-{role}.pt"}
    if publish_models:
        publish(out_dir / m["file"] for m in results.values())
    return results


def retrain_command(argv: Sequence[str]) -> str:
    """The pasteable command that trains the models again from scratch: the CLI's ``argv`` less ``--resume``
    and ``--state-dir`` (they say how an interrupted run continued, not what was trained)."""
    kept, skip = [], False
    for arg in argv:
        if not skip and arg != "--resume" and arg != "--state-dir" and not arg.startswith("--state-dir="):
            kept.append(arg)
        skip = arg == "--state-dir"
    return f"{CLI} " + shlex.join(kept)


def replicate_name(name: str, seed: int, first_seed: int) -> str:
    """The set name of one training seed of a replicated set: ``name`` for the first seed, else ``name-seed<seed>``."""
    return name if seed == first_seed else f"{name}-seed{seed}"


def train_replicates(recipe: Recipe, out_dir: Path, name: str, seeds: int, roles: tuple[str, ...] = tuple(ROLES),
                     device: str = "cpu", resume: bool = False, state_dir: Path | None = None,
                     command: str = "") -> dict[str, dict[str, dict]]:
    """Train the set ``seeds`` times with seeds ``recipe.seed``, ``recipe.seed + 1``, ... (the same
    rendered images, recipe and roles; the seed sets the initial weights and the batch order);
    returns the metrics per role of each replicate set (:func:`replicate_name`). All the models replace
    those in ``out_dir`` together, when the last is trained."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    check_names(roles, ROLES, "role")
    if not resume:  # before anything is rendered or overwritten
        refuse_interrupted([out_dir / f"{replicate_name(name, seed, recipe.seed)}-{role}.pt"
                            for seed in range(recipe.seed, recipe.seed + seeds) for role in roles], state_dir)
    rendered = training_data(recipe)
    out = {}
    for seed in range(recipe.seed, recipe.seed + seeds):
        replicate = replicate_name(name, seed, recipe.seed)
        out[replicate] = train_set(replace(recipe, seed=seed), out_dir, replicate, roles, device, resume, rendered, state_dir,
                                   command, publish_models=False)
    publish(out_dir / m["file"] for results in out.values() for m in results.values())
    return out


CURVE_FIELDS = ("set", "role", "seed", "epoch", "lr", "train_loss", "train_accuracy", "val_accuracy", "seconds")


def write_curves(trained: dict[str, dict[str, dict]], csv_path: Path) -> tuple[Path, Path, Path]:
    """Per model and seed, held-out accuracy and training loss per epoch: ``csv_path``, a PNG beside it,
    and beside them a Markdown table of each model's training and test accuracy (:func:`accuracy_table`)."""
    from .render.training_plot import plot_curves

    rows = [{"set": replicate, "role": role, "seed": metrics["recipe"]["seed"], **{k: h[k] for k in CURVE_FIELDS[3:]}}
            for replicate, results in trained.items() for role, metrics in results.items() for h in metrics["history"]]
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(csv_path, rows, CURVE_FIELDS)
    best = {(replicate, role): metrics["best_epoch"] for replicate, results in trained.items() for role, metrics in results.items()}
    table = atomic_write_text(csv_path.with_suffix(".md"), accuracy_table(trained))
    return csv_path, plot_curves(rows, best, csv_path.with_suffix(".png")), table


def accuracy_table(trained: dict[str, dict[str, dict]]) -> str:
    """Markdown: per set (training seed) and role, epochs, the kept epoch, whether the plateau rule ended
    training, held-out and test accuracy (Wilson 95% interval), the test-accuracy difference from the
    set's :func:`reference_role` on the same images (Newcombe's paired interval) and wall time; then the mean over seeds."""
    from .data.metrics import wilson_interval

    def pct(v: float) -> str:
        return f"{100 * v:.1f}"

    reference = role_title(reference_role(next(iter(trained.values()))))
    lines = [f"| set | model | seed | epochs (kept) | plateau | held-out % | test % [95% CI] | test − {reference}, points [95% CI] | train time |",
             "|---|---|---|---|---|---|---|---|---|"]
    tests: dict[str, list[float]] = {}
    for replicate, results in trained.items():
        gaps = accuracy_gaps(results) if all("test_correct" in m for m in results.values()) else {}
        for role, m in results.items():
            test = "n/a"
            gap = "{:+.1f} [{:+.1f}, {:+.1f}]".format(*(100 * v for v in gaps[role])) if role in gaps else "—"
            if "test_correct" in m:
                lo, hi = wilson_interval(sum(m["test_correct"]), len(m["test_correct"]))
                test = f"{pct(m['test_accuracy'])} [{pct(lo)}, {pct(hi)}]"
                tests.setdefault(role, []).append(m["test_accuracy"])
            plateau = ("yes" if m.get("plateau") else "no") if m["recipe"].get("schedule") == "plateau" else "fixed schedule"
            epochs = m["recipe"]["epochs"]  # a fixed schedule's length, which older checkpoints do not record apart
            lines.append(f"| {replicate} | {role_title(role)} | {m['recipe']['seed']} | {m.get('epochs', epochs)} ({m.get('best_epoch', epochs)}) "
                         f"| {plateau} | {100 * m['val_accuracy']:.2f} | {test} | {gap} | {m['train_seconds'] / 60:.0f} min |")
    if len(trained) > 1 and tests:
        counts = {len(v) for v in tests.values()}
        means = ", ".join(f"{role_title(role)} {pct(float(np.mean(v)))}%" + ("" if len(counts) == 1 else
                          f" ({len(v)} seed{'s' * (len(v) > 1)})") for role, v in tests.items())
        lines += ["", f"Mean test accuracy over {f'the {counts.pop()} seeds' if len(counts) == 1 else 'seeds'}: {means}."]
    recipe = next(iter(next(iter(trained.values())).values()))["recipe"]
    lines += ["", f"Recipe: {recipe['difficulty']} generator at {recipe['size']} px, {recipe['train_size']:,} training images, "
                  f"{recipe.get('schedule', 'onecycle')} schedule, {recipe.get('init', 'torchvision')} initialisation. Held-out: "
                  f"{recipe['val_size']:,} images of dataset seed {VAL_SEED} (chooses the kept epoch)"
                  + (f"; test: {recipe['test_size']:,} images of dataset seed {TEST_SEED}, which no step of training or selection saw."
                     if tests else ".")]
    return "\n".join(lines) + "\n"


def reference_role(results: dict[str, dict]) -> str:
    """The role the others are compared with: the baseline when the set has one, else its first role."""
    return "baseline" if "baseline" in results else next(iter(results))


def accuracy_gaps(results: dict[str, dict]) -> dict[str, list[float]]:
    """Per role other than the :func:`reference_role`: test accuracy minus the reference's on the same
    images, with Newcombe's paired 95% interval: ``[difference, low, high]``."""
    from .data.metrics import newcombe_paired_ci

    reference = reference_role(results)
    return {role: [round(v, 4) for v in newcombe_paired_ci(m["test_correct"], results[reference]["test_correct"])]
            for role, m in results.items() if role != reference}


def register_set(results: dict[str, dict], out_dir: Path, name: str = "demo", replicates: Sequence[str] | None = None) -> Path:
    """Describe the trained models as set ``name`` in ``out_dir/manifest.json`` (file, SHA-256, recipe,
    accuracy); ``replicates``: the sets of the same models trained with other seeds (kept when None).
    A set already in the manifest keeps its place; a new one goes last."""
    from .data.metrics import wilson_interval
    from .models import load_checkpoint, sha256
    from .models.sets import read_manifest

    path = out_dir / "manifest.json"
    manifest = read_manifest(out_dir) if path.is_file() else {"models": {}, "sets": {}}
    for role, metrics in results.items():
        file = out_dir / metrics["file"]
        info = load_checkpoint(file).info
        manifest["models"][f"{name}-{role}"] = {
            "kind": "shipped", "title": info.title, "file": metrics["file"], "sha256": sha256(file),
            "architecture": {"depth": info.depth, "attention": info.attention, "options": info.options},
            "class_names": info.class_names, "input_size": info.input_size,
            "normalization": {"mean": list(info.mean), "std": list(info.std)},
            "training_command": metrics["command"], "seed": metrics["recipe"]["seed"],
            "train_dataset_seed": metrics["train_seed"], "heldout_dataset_seed": metrics["val_seed"],
            "heldout_accuracy": round(metrics["val_accuracy"], 4), "heldout_size": metrics["val_size"],
            **({"test_dataset_seed": metrics["test_seed"], "test_accuracy": round(metrics["test_accuracy"], 4),
                "test_accuracy_ci95": [round(v, 4) for v in wilson_interval(sum(metrics["test_correct"]), metrics["test_size"])],
                "test_size": metrics["test_size"]} if "test_accuracy" in metrics else {}),
            **{k: metrics[k] for k in ("epochs", "best_epoch", "lr_drops", "plateau") if k in metrics},
            "schedule": metrics["recipe"].get("schedule", "onecycle"), "init": metrics["recipe"].get("init", "torchvision"),
            "train_seconds": metrics["train_seconds"], "generator": metrics["recipe"]["difficulty"],
            "how_to_get": "it ships with the project" + (f"; retrain with: {metrics['command']}" if metrics["command"] else ""),
        }
    recipe = next(iter(results.values()))["recipe"]
    described = ", ".join(role_title(r) for r in results)
    old = manifest["sets"].get(name, {})
    replicates = list(replicates) if replicates is not None else old.get("replicates", [])
    manifest["sets"][name] = {"models": {role: f"{name}-{role}" for role in results},
                              "description": f"ResNet-{recipe['depth']}-style {described}, trained by the project on "
                                             f"generated shapes ({recipe['difficulty']} generator, {recipe['size']} px, training seed {recipe['seed']})",
                              **({"replicates": replicates} if replicates else {}),
                              **({"test_accuracy_gaps": accuracy_gaps(results), "test_accuracy_reference": reference_role(results)}
                                 if all("test_correct" in m for m in results.values()) else {})}
    return atomic_write(path, lambda f: f.write((json.dumps(manifest, indent=2) + "\n").encode()))
