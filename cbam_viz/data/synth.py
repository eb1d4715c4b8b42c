"""Procedural shape images with pixel-exact ground truth.

Each image holds one target shape (the class) on a textured background with
distractor marks that belong to no class. How hard an image is comes from the
knobs of :class:`Difficulty`: ``MEDIUM`` adds smaller decoy shapes of other
classes, marks that share the target's colour or texture and come close to it,
an occluder over part of the target, and full rotation; ``HARD`` (the default,
used to train the 4-epoch demo set) has more and bigger decoys (up to 0.85x the
target), more marks, smaller targets and more and heavier occlusion; ``HARDER``
(the plateau recipe's, chosen because a baseline trained to its plateau on
``HARD`` reached 97.8%, and one on a first ``HARDER`` with radii from 10% of the
image 95.9%, both above the demo's 80-95% goal) has still more marks and decoys
(up to 0.95x), target radii of 7-18% of the image and occluders that may hide
60% of the target; ``EASY`` is the first, single-object generator. The target
is painted through an "L" mask image, and ``Sample.mask`` is exactly the set of
its pixels left visible (an occluder's pixels are not in it).

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
DEFAULT_SIZE = 96
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


# ------------------------------------------------------------ difficulty

@dataclass(frozen=True)
class Difficulty:
    """Knobs of the generator; ranges are ``(low, high)``, counts inclusive."""

    distractors: tuple[int, int] = (6, 12)      # marks (scribbles, segments, dots, blobs, squiggles)
    decoys: tuple[int, int] = (1, 3)            # smaller shapes of other classes
    decoy_scale: tuple[float, float] = (0.35, 0.6)  # decoy radius / target radius
    shared_colour: float = 0.5                  # chance a mark or decoy takes the target's colour
    texture: float = 0.35                       # chance the target (and its colour-sharing decoys) are striped
    occlusion: float = 0.4                      # chance of a bar over part of the target
    min_visible: float = 0.6                    # an occluder never hides more than 1 - this of the target
    scale: tuple[float, float] = (0.16, 0.33)   # target radius / image size
    rotation: float = math.pi                   # target rotation in [-rotation, rotation]
    halo: float = 1 / 48                        # marks are kept this far (x image size) from the target

    def __post_init__(self) -> None:
        for name in ("distractors", "decoys"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {(lo, hi)}")
        for name in ("shared_colour", "texture", "occlusion", "min_visible"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.05 <= self.scale[0] <= self.scale[1] <= 0.4:
            raise ValueError(f"scale must be within [0.05, 0.4], got {self.scale}")


MEDIUM = Difficulty()
HARD = Difficulty(distractors=(8, 14), decoys=(2, 4), decoy_scale=(0.55, 0.85), occlusion=0.65, min_visible=0.5,
                  scale=(0.14, 0.3))
HARDER = Difficulty(distractors=(10, 18), decoys=(3, 5), decoy_scale=(0.65, 0.95), occlusion=0.75, min_visible=0.4,
                    scale=(0.07, 0.18))
EASY = Difficulty(distractors=(3, 6), decoys=(0, 0), shared_colour=0.0, texture=0.0, occlusion=0.0,
                  scale=(0.2, 0.33), rotation=math.pi / 6, halo=1 / 20)
DIFFICULTIES: dict[str, Difficulty] = {"easy": EASY, "medium": MEDIUM, "hard": HARD, "harder": HARDER}

# ------------------------------------------------------------ distractors

Colour = tuple[int, int, int]


def _random_colour(rng: np.random.Generator) -> Colour:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _scribble(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, colour: Colour) -> None:
    """A wandering curve: a random walk whose heading turns a little each step."""
    n = int(rng.integers(6, 12))
    headings = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.6, n))
    steps = size * 0.05 * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    pts = np.cumsum(np.vstack([rng.uniform(0, size, 2), steps]), axis=0)
    draw.line([tuple(p) for p in pts.tolist()], fill=colour, width=max(1, round(size / 40)), joint="curve")


def _segment(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, colour: Colour) -> None:
    a = rng.uniform(0, size, 2)
    b = a + rng.normal(0, size * 0.3, 2)
    draw.line([tuple(a), tuple(b)], fill=colour, width=max(1, round(size * rng.uniform(0.015, 0.05))))


def _dots(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, colour: Colour) -> None:
    centre = rng.uniform(0, size, 2)
    r = max(1.0, size / 50)
    for x, y in (centre + rng.normal(0, size * 0.06, (int(rng.integers(4, 9)), 2))).tolist():
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def _blob(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, colour: Colour) -> None:
    n = int(rng.integers(7, 11))
    cx, cy = rng.uniform(0, size, 2)
    radii = size * rng.uniform(0.02, 0.06, n)
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    draw.polygon(list(zip((cx + radii * np.cos(angles)).tolist(), (cy + radii * np.sin(angles)).tolist())), fill=colour)


def _squiggle(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, colour: Colour) -> None:
    length, amp, turns = size * rng.uniform(0.2, 0.45), size * rng.uniform(0.02, 0.05), rng.uniform(1.5, 3.5)
    t = np.linspace(0, 1, 24)
    along, across = t * length, amp * np.sin(2 * math.pi * turns * t)
    theta = rng.uniform(0, 2 * math.pi)
    x0, y0 = rng.uniform(0, size, 2)
    xs = x0 + along * math.cos(theta) - across * math.sin(theta)
    ys = y0 + along * math.sin(theta) + across * math.cos(theta)
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colour, width=max(1, round(size / 40)))


_DISTRACTORS = (_scribble, _segment, _dots, _blob, _squiggle)


def _mark_colour(rng: np.random.Generator, level: Difficulty, target: Colour) -> Colour:
    return target if level.shared_colour and rng.random() < level.shared_colour else _random_colour(rng)


def _draw_distractors(image: Image.Image, rng: np.random.Generator, size: int, level: Difficulty, target: Colour) -> None:
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(level.distractors[0], level.distractors[1] + 1))):
        kind = _DISTRACTORS[int(rng.integers(len(_DISTRACTORS)))]
        kind(draw, rng, size, _mark_colour(rng, level, target))


# ----------------------------------------------------------------- shapes on the canvas

@dataclass(frozen=True)
class _Placement:
    cx: float
    cy: float
    radius: float
    angle: float


def _shape_mask(class_name: str, where: _Placement, size: int) -> Image.Image:
    """The class shape drawn at ``where`` into an "L" image (255 inside)."""
    cos, sin = math.cos(where.angle) * where.radius, math.sin(where.angle) * where.radius
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for polygon, fill in _SHAPES[class_name]:
        draw.polygon([(where.cx + x * cos - y * sin, where.cy + x * sin + y * cos) for x, y in polygon], fill=fill)
    return mask


def _target_placement(rng: np.random.Generator, size: int, level: Difficulty) -> _Placement:
    radius = size * rng.uniform(*level.scale)
    margin = max(1.0, size * 0.03)
    cx, cy = rng.uniform(radius + margin, size - radius - margin, 2)
    return _Placement(float(cx), float(cy), float(radius), float(rng.uniform(-level.rotation, level.rotation)))


def _target_colour(rng: np.random.Generator, under: np.ndarray) -> Colour:
    """A random colour whose luminance stands out from every background pixel it covers."""
    luma = under.astype(np.float32) @ _LUMA
    lo, hi, mean = float(luma.min()), float(luma.max()), float(luma.mean())
    for _ in range(30):
        colour = rng.integers(0, 256, 3)
        c = float(colour @ _LUMA)
        if abs(c - mean) >= 70 and (c <= lo - 25 or c >= hi + 25):
            return tuple(int(v) for v in colour)
    return (0, 0, 0) if mean >= 128 else (255, 255, 255)


def _stripes(rng: np.random.Generator, size: int, colour: Colour, brighter: bool) -> Image.Image:
    """``colour`` striped with a shade further from the background (lighter when the colour is lighter than
    the background, darker otherwise), so both stand out from it at least as much as ``colour`` does."""
    c = np.asarray(colour, dtype=np.float32)
    shade = (c + (255 - c) * 0.55 if brighter else c * 0.45).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    theta, period = rng.uniform(0, math.pi), size * rng.uniform(0.05, 0.1)
    on = (np.floor((xx * math.cos(theta) + yy * math.sin(theta)) / period) % 2).astype(bool)
    return Image.fromarray(np.where(on[..., None], shade, c.astype(np.uint8)))


def _decoys(rng: np.random.Generator, label: int, target: _Placement, size: int, level: Difficulty) -> list[tuple[Image.Image, bool]]:
    """Smaller shapes of other classes, clear of the target; each with whether it shares the target's paint."""
    out = []
    for _ in range(int(rng.integers(level.decoys[0], level.decoys[1] + 1))):
        cls = CLASSES[(label + 1 + int(rng.integers(NUM_CLASSES - 1))) % NUM_CLASSES]
        radius = target.radius * rng.uniform(*level.decoy_scale)
        shares = bool(rng.random() < level.shared_colour)
        angle = float(rng.uniform(-math.pi, math.pi))
        for _attempt in range(8):
            cx, cy = rng.uniform(radius + 1, size - radius - 1, 2)
            if math.hypot(cx - target.cx, cy - target.cy) > target.radius + radius + size * level.halo + 2:
                out.append((_shape_mask(cls, _Placement(float(cx), float(cy), radius, angle), size), shares))
                break
    return out


def _occluder(rng: np.random.Generator, target: _Placement, size: int) -> Image.Image:
    """A bar across part of the target, as an "L" mask."""
    direction = rng.uniform(0, 2 * math.pi)
    offset = target.radius * rng.uniform(0.35, 0.85)
    px, py = target.cx + offset * math.cos(direction), target.cy + offset * math.sin(direction)
    along = direction + math.pi / 2 + rng.normal(0, 0.3)
    half = target.radius * 1.2
    width = max(2, round(target.radius * rng.uniform(0.2, 0.4)))
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).line([(px - half * math.cos(along), py - half * math.sin(along)),
                               (px + half * math.cos(along), py + half * math.sin(along))], fill=255, width=width)
    return mask


def _halo(mask: np.ndarray, size: int, level: Difficulty) -> np.ndarray:
    """The mask grown by a few pixels: distractors are kept out of it."""
    return maximum_filter(mask, size=2 * max(1, round(size * level.halo)) + 1)


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def render_sample(seed: int, index: int, size: int = DEFAULT_SIZE, draw_target: bool = True,
                  difficulty: Difficulty = HARD) -> Sample:
    """Render image ``index`` of dataset ``seed`` (both non-negative); label is ``index % NUM_CLASSES``.

    Deterministic per ``(seed, index, size, difficulty)``. ``draw_target=False`` renders the identical
    scene without painting the target (the mask and box are still returned), which lets tests check
    the mask.
    """
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
    rng = np.random.default_rng([seed, index])
    label = index % NUM_CLASSES
    class_name = CLASSES[label]

    background = _background(rng, size)
    where = _target_placement(rng, size, difficulty)
    shape_img = _shape_mask(class_name, where, size)
    shape = np.asarray(shape_img) > 0
    colour = _target_colour(rng, background[shape])
    brighter = float(np.asarray(colour) @ _LUMA) > float(background[shape].mean(axis=0) @ _LUMA)
    paint = _stripes(rng, size, colour, brighter) if difficulty.texture and rng.random() < difficulty.texture else None

    scene = Image.fromarray(background)
    _draw_distractors(scene, rng, size, difficulty, colour)
    for decoy, shares in _decoys(rng, label, where, size, difficulty):
        scene.paste(paint if shares and paint is not None else (colour if shares else _random_colour(rng)), mask=decoy)
    pixels = np.where(_halo(shape, size, difficulty)[..., None], background, np.asarray(scene))
    image = Image.fromarray(pixels)
    if draw_target:
        image.paste(paint if paint is not None else colour, mask=shape_img)

    mask = shape
    if difficulty.occlusion and rng.random() < difficulty.occlusion:
        bar = _occluder(rng, where, size)
        visible = shape & ~(np.asarray(bar) > 0)
        if visible.sum() >= difficulty.min_visible * shape.sum():
            image.paste(_random_colour(rng), mask=bar)
            mask = visible
    return Sample(image=image, label=label, mask=mask, box=_tight_box(mask), class_name=class_name)
