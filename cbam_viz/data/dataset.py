"""Torch dataset over :func:`render_sample`, and a helper to write samples to disk."""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from .synth import DEFAULT_SIZE, HARD, Difficulty, Sample, render_sample

# Per-channel pixel statistics of the synthetic images (measured on 2000 images of the hard generator at 96 px).
MEAN: tuple[float, float, float] = (0.505, 0.504, 0.506)
STD: tuple[float, float, float] = (0.180, 0.196, 0.173)


def default_transform() -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> float tensor (3, H, W) normalised with ``MEAN`` and ``STD``."""
    from torchvision import transforms  # imported here: metrics-only users skip its import time

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


class SynthShapes(Dataset):
    """``length`` procedural images of dataset ``seed``; item ``i`` is ``(transform(image), label)``."""

    def __init__(self, seed: int, length: int, size: int = DEFAULT_SIZE,
                 transform: Callable[[Image.Image], object] | None = None, difficulty: Difficulty = HARD) -> None:
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.seed, self.length, self.size, self.difficulty = seed, length, size, difficulty
        self.transform = transform if transform is not None else default_transform()

    def __len__(self) -> int:
        return self.length

    def sample(self, i: int) -> Sample:
        """The ground-truth sample behind item ``i``."""
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for length {self.length}")
        return render_sample(self.seed, i, self.size, difficulty=self.difficulty)

    def __getitem__(self, i: int) -> tuple[object, int]:
        s = self.sample(i)
        return self.transform(s.image), s.label


def write_samples(out_dir: str | Path, n: int, seed: int, size: int = DEFAULT_SIZE,
                  difficulty: Difficulty = HARD) -> list[Path]:
    """Write ``n`` images and their masks as PNG plus ``labels.csv``; return the image paths.

    Files are ``{i:05d}_{class}.png`` and ``{i:05d}_{class}_mask.png`` (0/255 "L");
    the CSV columns are ``index, file, class, label, x0, y0, x1, y1`` (x1, y1 exclusive).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "file", "class", "label", "x0", "y0", "x1", "y1"])
        for i in range(n):
            s = render_sample(seed, i, size, difficulty=difficulty)
            path = out / f"{i:05d}_{s.class_name}.png"
            s.image.save(path)
            Image.fromarray(s.mask.astype("uint8") * 255).save(out / f"{i:05d}_{s.class_name}_mask.png")
            writer.writerow([i, path.name, s.class_name, s.label, *s.box])
            paths.append(path)
    return paths
