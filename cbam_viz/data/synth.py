"""Procedural shape images with pixel-exact ground truth.

Each image holds one target shape (the class) on a textured background with
distractor marks that belong to no class. The target is painted through an
"L" mask image, so ``Sample.mask`` is exactly the set of pixels it covers.

Box convention (shared with :mod:`cbam_viz.data.metrics`): ``(x0, y0, x1, y1)``
with ``x0, y0`` inclusive and ``x1, y1`` exclusive, i.e. the box is
``mask[y0:y1, x0:x1]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import maximum_filter

Point = tuple[float, float]
# A shape is a list of (polygon, fill) drawn in order; fill 0 cuts a hole.
Shape = list[tuple[list[Point], int]]

MIN_SIZE, MAX_SIZE = 32, 256
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True, eq=False)
class Sample:
    """One rendered image with its ground truth."""

    image: Image.Image
    label: int
    mask: np.ndarray  # bool HxW, True on target pixels
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive
    class_name: str


# ---------------------------------------------------------------- shapes
# Unit shapes: centred at the origin, inside the unit circle, y pointing down.

def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> list[Point]:
    return [(radius * math.cos(phase + 2 * math.pi * k / n),
             radius * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _disc(radius: float = 1.0, cx: float = 0.0, cy: float = 0.0) -> list[Point]:
    return [(cx + x, cy + y) for x, y in _regular(48, radius)]


def _star() -> list[Point]:
    outer, inner = _regular(5, 1.0), _regular(5, 0.42, -math.pi / 2 + math.pi / 5)
    return [p for pair in zip(outer, inner) for p in pair]


def _heart() -> list[Point]:
    ts = np.linspace(0, 2 * math.pi, 60, endpoint=False)
    xs = 16 * np.sin(ts) ** 3
    ys = -(13 * np.cos(ts) - 5 * np.cos(2 * ts) - 2 * np.cos(3 * ts) - np.cos(4 * ts))
    ys = ys - (ys.max() + ys.min()) / 2
    scale = 1.0 / np.hypot(xs, ys).max()
    return list(zip((xs * scale).tolist(), (ys * scale).tolist()))


_SHAPES: dict[str, Shape] = {
    "circle": [(_disc(), 255)],
    "square": [([(-0.7, -0.7), (0.7, -0.7), (0.7, 0.7), (-0.7, 0.7)], 255)],
    "triangle": [(_regular(3), 255)],
    "star": [(_star(), 255)],
    "cross": [([(-0.3, -0.95), (0.3, -0.95), (0.3, -0.3), (0.95, -0.3), (0.95, 0.3),
                (0.3, 0.3), (0.3, 0.95), (-0.3, 0.95), (-0.3, 0.3), (-0.95, 0.3),
                (-0.95, -0.3), (-0.3, -0.3)], 255)],
    "heart": [(_heart(), 255)],
    "ring": [(_disc(), 255), (_disc(0.55), 0)],
    "arrow": [([(-0.95, -0.22), (0.15, -0.22), (0.15, -0.6), (0.95, 0.0), (0.15, 0.6),
                (0.15, 0.22), (-0.95, 0.22)], 255)],
    "crescent": [(_disc(), 255), (_disc(0.82, 0.45, -0.15), 0)],
    "hexagon": [(_regular(6, 1.0, 0.0), 255)],
    "diamond": [([(0.0, -1.0), (0.58, 0.0), (0.0, 1.0), (-0.58, 0.0)], 255)],
    "lightning": [([(0.28, -0.95), (-0.52, 0.12), (-0.05, 0.12), (-0.28, 0.95),
                    (0.57, -0.15), (0.1, -0.15)], 255)],
}

CLASSES: tuple[str, ...] = tuple(_SHAPES)
NUM_CLASSES = len(CLASSES)


# ------------------------------------------------------------ background

def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted base colour + gradient + optional stripes + soft blotches + noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.empty((size, size, 3), np.float32)
    img[:] = rng.uniform(95, 165) + rng.uniform(-25, 25, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle)
    img += ramp[..., None] * rng.uniform(-50, 50, 3)
    if rng.random() < 0.6:
        theta, freq = rng.uniform(0, math.pi), rng.uniform(3, 9)
        wave = np.sin(2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)))
        img += wave[..., None] * rng.uniform(-14, 14, 3)
    for _ in range(rng.integers(2, 6)):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.25)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-35, 35, 3)
    img += rng.normal(0, 6, (size, size, 1)) + rng.normal(0, 3, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


# ------------------------------------------------------------ distractors

def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _scribble(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    """A wandering curve: a random walk whose heading turns a little each step."""
    n = int(rng.integers(6, 12))
    headings = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.6, n))
    steps = size * 0.05 * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    pts = np.cumsum(np.vstack([rng.uniform(0, size, 2), steps]), axis=0)
    draw.line([tuple(p) for p in pts.tolist()], fill=_random_colour(rng),
              width=max(1, round(size / 40)), joint="curve")


def _segment(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    a = rng.uniform(0, size, 2)
    b = a + rng.normal(0, size * 0.3, 2)
    draw.line([tuple(a), tuple(b)], fill=_random_colour(rng),
              width=max(1, round(size * rng.uniform(0.015, 0.05))))


def _dots(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    centre, colour = rng.uniform(0, size, 2), _random_colour(rng)
    r = max(1.0, size / 50)
    for x, y in (centre + rng.normal(0, size * 0.06, (int(rng.integers(4, 9)), 2))).tolist():
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def _blob(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    n = int(rng.integers(7, 11))
    cx, cy = rng.uniform(0, size, 2)
    radii = size * rng.uniform(0.02, 0.06, n)
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    draw.polygon(list(zip((cx + radii * np.cos(angles)).tolist(),
                          (cy + radii * np.sin(angles)).tolist())), fill=_random_colour(rng))


def _squiggle(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    length, amp, turns = size * rng.uniform(0.2, 0.45), size * rng.uniform(0.02, 0.05), rng.uniform(1.5, 3.5)
    t = np.linspace(0, 1, 24)
    along, across = t * length, amp * np.sin(2 * math.pi * turns * t)
    theta = rng.uniform(0, 2 * math.pi)
    x0, y0 = rng.uniform(0, size, 2)
    xs = x0 + along * math.cos(theta) - across * math.sin(theta)
    ys = y0 + along * math.sin(theta) + across * math.cos(theta)
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=_random_colour(rng),
              width=max(1, round(size / 40)))


_DISTRACTORS = (_scribble, _segment, _dots, _blob, _squiggle)


def _draw_distractors(image: Image.Image, rng: np.random.Generator, size: int) -> None:
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 7))):
        _DISTRACTORS[int(rng.integers(len(_DISTRACTORS)))](draw, rng, size)


# ----------------------------------------------------------------- target

def _target_mask(rng: np.random.Generator, class_name: str, size: int) -> Image.Image:
    """Draw the class shape at a random scale, rotation and position into an "L" image."""
    radius = size * rng.uniform(0.2, 0.33)
    margin = max(1.0, size * 0.03)
    cx, cy = rng.uniform(radius + margin, size - radius - margin, 2)
    angle = rng.uniform(-math.pi / 6, math.pi / 6)
    cos, sin = math.cos(angle) * radius, math.sin(angle) * radius
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for polygon, fill in _SHAPES[class_name]:
        draw.polygon([(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in polygon], fill=fill)
    return mask


def _target_colour(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A random colour whose luminance stands out from every background pixel it covers."""
    luma = under.astype(np.float32) @ _LUMA
    lo, hi, mean = float(luma.min()), float(luma.max()), float(luma.mean())
    for _ in range(30):
        colour = rng.integers(0, 256, 3)
        c = float(colour @ _LUMA)
        if abs(c - mean) >= 70 and (c <= lo - 25 or c >= hi + 25):
            return tuple(int(v) for v in colour)
    return (0, 0, 0) if mean >= 128 else (255, 255, 255)


def _halo(mask: np.ndarray, size: int) -> np.ndarray:
    """The mask grown by a few pixels: distractors are kept out of it."""
    return maximum_filter(mask, size=2 * max(2, round(size / 20)) + 1)


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def render_sample(seed: int, index: int, size: int = 64, draw_target: bool = True) -> Sample:
    """Render image ``index`` of dataset ``seed`` (both non-negative); label is ``index % NUM_CLASSES``.

    ``draw_target=False`` renders the identical scene without painting the target
    (the mask and box are still returned), which lets tests check the mask.
    """
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
    rng = np.random.default_rng([seed, index])
    label = index % NUM_CLASSES
    class_name = CLASSES[label]

    background = _background(rng, size)
    scene = Image.fromarray(background)
    _draw_distractors(scene, rng, size)
    mask_img = _target_mask(rng, class_name, size)
    mask = np.asarray(mask_img) > 0
    pixels = np.where(_halo(mask, size)[..., None], background, np.asarray(scene))
    image = Image.fromarray(pixels)
    colour = _target_colour(rng, background[mask])
    if draw_target:
        image.paste(colour, mask=mask_img)
    return Sample(image=image, label=label, mask=mask, box=_tight_box(mask), class_name=class_name)
