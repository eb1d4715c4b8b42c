"""Train the demo set: a baseline, an SE and a CBAM ResNet with one recipe, one seed, one dataset.

Every model sees the same pre-rendered images in the same order (the shuffle and the flips are
seeded per epoch and step), so the only difference between them is the attention module. Training is resumable:
after every epoch a ``.state.pt`` file next to the output holds model, optimizer, scheduler
and epoch; ``resume=True`` continues from it.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import CLASSES, DIFFICULTIES, MEAN, STD, render_sample
from .models import ResNet, build_resnet, save_checkpoint
from .models.sets import role_title

TRAIN_SEED, VAL_SEED = 1, 2  # dataset seeds: training images, held-out images
# What each role of the demo set is: build_resnet's attention argument and its options.
ROLES: dict[str, tuple[str | None, dict]] = {"baseline": (None, {}), "se": ("se", {}), "cbam": ("cbam", {})}


@dataclass
class Recipe:
    depth: int = 18
    width: int = 16
    size: int = 96
    train_size: int = 20_000
    val_size: int = 2_000
    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0
    difficulty: str = "hard"

    def __post_init__(self) -> None:
        if self.difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {list(DIFFICULTIES)}, got {self.difficulty!r}")


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
    """A freshly initialised model (seeded by the recipe) that knows the generated classes."""
    torch.manual_seed(recipe.seed)
    model = build_resnet(recipe.depth, attention, num_classes=len(CLASSES), width=recipe.width, stem="small", **(options or {}))
    info = model.info
    info.class_names, info.input_size, info.resize, info.mean, info.std = list(CLASSES), recipe.size, None, MEAN, STD
    suffix = title or (f" + {role_title(attention)}" if attention else "")
    info.name = f"ResNet-{recipe.depth}/w{recipe.width}{suffix} (demo)"
    return model


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = sum(int((model(x[i:i + batch_size].to(device)).argmax(1).cpu() == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def train(recipe: Recipe, attention: str | None, out: Path, data: tuple, val: tuple,
          device: str = "cpu", resume: bool = False, options: dict | None = None, title: str | None = None) -> dict:
    """Train one model (``attention`` and CBAM ``options`` as for ``build_resnet``); write the checkpoint
    to ``out``; return its metrics."""
    if resume and out.is_file() and not out.with_suffix(".state.pt").is_file():
        print(f"{out.name} is already trained; keeping it", file=sys.stderr)
        return torch.load(out, weights_only=True)["metrics"]
    x, y = data
    model = build_demo_model(recipe, attention, options, title).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay, nesterov=True)
    steps = recipe.epochs * (len(x) // recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=steps, pct_start=0.2)
    state_path, start = out.with_suffix(".state.pt"), 0
    if resume and state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["epoch"]
        print(f"resuming {out.name} after epoch {start}", file=sys.stderr)
    began = time.perf_counter()
    for epoch in range(start, recipe.epochs):
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(recipe.seed * 1000 + epoch))
        bar = tqdm(range(len(x) // recipe.batch_size), desc=f"{out.stem} epoch {epoch + 1}/{recipe.epochs}", file=sys.stderr)
        seen = correct = 0
        for step in bar:
            idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            flip = torch.rand(len(idx), generator=torch.Generator().manual_seed(epoch * 100_000 + step)) < 0.5
            xb = torch.where(flip.to(device)[:, None, None, None], xb.flip(3), xb)  # the shapes' classes are mirror-invariant
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.3f}")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1}, state_path)
    val_acc = accuracy(model, *val)
    metrics = {"val_accuracy": val_acc, "val_size": len(val[0]), "val_seed": VAL_SEED, "train_seed": TRAIN_SEED,
               "train_seconds": round(time.perf_counter() - began, 1), "recipe": asdict(recipe)}
    save_checkpoint(model.cpu(), out, metrics=metrics)
    state_path.unlink(missing_ok=True)
    print(f"{out.name}: held-out accuracy {val_acc:.2%} on {len(val[0])} images", file=sys.stderr)
    return metrics


def check_names(names: Sequence[str], known: Iterable[str], what: str) -> None:
    """ValueError naming every entry of ``names`` that is not in ``known`` (roles, ablation variants)."""
    known = list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(known)}")


def training_data(recipe: Recipe) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Seed torch, make its algorithms deterministic, and render the recipe's training and validation images."""
    torch.manual_seed(recipe.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return (render_tensors(TRAIN_SEED, recipe.train_size, recipe.size, recipe.difficulty),
            render_tensors(VAL_SEED, recipe.val_size, recipe.size, recipe.difficulty))


def train_set(recipe: Recipe, out_dir: Path, name: str = "demo", roles: tuple[str, ...] = tuple(ROLES),
              device: str = "cpu", resume: bool = False, rendered: tuple | None = None) -> dict[str, dict]:
    """Train every role (baseline, se, cbam) with the same recipe and data (``rendered``: the
    recipe's :func:`training_data`, rendered here when None); returns metrics per role."""
    check_names(roles, ROLES, "role")
    data, val = rendered or training_data(recipe)
    command = "python -m cbam_viz " + shlex.join(sys.argv[1:]) if sys.argv[0].endswith("__main__.py") else ""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for role in roles:
        attention, options = ROLES[role]
        metrics = train(recipe, attention, out_dir / f"{name}-{role}.pt", data, val, device, resume, options)
        results[role] = {**metrics, "command": command, "file": f"{name}-{role}.pt"}
    return results


def replicate_name(name: str, seed: int, first_seed: int) -> str:
    """The set name of one training seed of a replicated set: ``name`` for the first seed, else ``name-seed<seed>``."""
    return name if seed == first_seed else f"{name}-seed{seed}"


def train_replicates(recipe: Recipe, out_dir: Path, name: str, seeds: int, roles: tuple[str, ...] = tuple(ROLES),
                     device: str = "cpu", resume: bool = False) -> dict[str, dict[str, dict]]:
    """Train the set ``seeds`` times with seeds ``recipe.seed``, ``recipe.seed + 1``, ... (the same
    rendered images, recipe and roles; the seed sets the initial weights and the batch order);
    returns the metrics per role of each replicate set (:func:`replicate_name`)."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    check_names(roles, ROLES, "role")
    rendered = training_data(recipe)
    out = {}
    for seed in range(recipe.seed, recipe.seed + seeds):
        replicate = replicate_name(name, seed, recipe.seed)
        out[replicate] = train_set(replace(recipe, seed=seed), out_dir, replicate, roles, device, resume, rendered)
    return out


def register_set(results: dict[str, dict], out_dir: Path, name: str = "demo", replicates: Sequence[str] | None = None) -> Path:
    """Describe the trained models as set ``name`` in ``out_dir/manifest.json`` (file, SHA-256, recipe,
    accuracy); ``replicates``: the sets of the same models trained with other seeds (kept when None).
    A set already in the manifest keeps its place; a new one goes last."""
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
            "train_seconds": metrics["train_seconds"], "generator": metrics["recipe"]["difficulty"],
            "how_to_get": f"it ships with the project; retrain with: {metrics['command']}",
        }
    recipe = next(iter(results.values()))["recipe"]
    described = ", ".join(role_title(r) for r in results)
    old = manifest["sets"].get(name, {})
    replicates = list(replicates) if replicates is not None else old.get("replicates", [])
    manifest["sets"][name] = {"models": {role: f"{name}-{role}" for role in results},
                              "description": f"ResNet-{recipe['depth']}-style {described}, trained by the project on "
                                             f"generated shapes ({recipe['difficulty']} generator, {recipe['size']} px, training seed {recipe['seed']})",
                              **({"replicates": replicates} if replicates else {})}
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
