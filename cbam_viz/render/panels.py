"""Panels of the app's Compare tab: CAM views, CBAM attention grids and heat maps, labels, text.

numpy and PIL only, so a full set of panels renders in milliseconds. Images are RGB uint8.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data import concentration, energy_pointing_game, pointing_game, rank_hit, roc_auc
from ..explain import Explanation
from .overlay import colorize, outline, overlay

CAM_CMAP = "jet"
ATTENTION_CMAP = "viridis"
INK = (33, 37, 41)
RULE = (173, 181, 189)  # the line between two models' panels
PAD = 6
FONT_SIZE = 13  # labels; panels are shown at about their own size, so this is close to the size on screen
TITLE_SIZE = 16  # the model's name above its panels
TOP = 30  # room for the label Gradio draws over an image's top-left corner
Text = tuple[tuple[int, int], str]  # (x, y) top-left, text


@lru_cache(maxsize=4)
def _font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=4096)
def _text_mask(text: str, size: int = FONT_SIZE) -> Image.Image:
    """``text`` rendered once as an alpha mask (labels such as block names repeat on every request)."""
    _, _, right, bottom = _font(size).getbbox(text)
    mask = Image.new("L", (max(1, int(right)), max(1, int(bottom))))
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=_font(size))
    return mask


def _with_text(canvas: np.ndarray, texts: Sequence[Text], size: int = FONT_SIZE, ink: tuple[int, int, int] = INK) -> np.ndarray:
    picture = Image.fromarray(canvas)
    for xy, text in texts:
        picture.paste(ink, xy, _text_mask(text, size))
    return np.asarray(picture)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrinking = height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def upscale(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` enlarged (bicubic) so that its shorter side is at least ``side`` pixels."""
    h, w = image.shape[:2]
    factor = side / min(h, w)
    return image if factor <= 1 else _resize(image, round(h * factor), round(w * factor))


def _outlined(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return image if mask is None else outline(image, mask)


def colorbar(cmap: str, width: int, low: str, high: str, height: int = 10) -> np.ndarray:
    """A horizontal colour bar with a label under each end, on white."""
    bar = np.full((height + 18, width, 3), 255, np.uint8)
    bar[:height] = colorize(np.tile(np.linspace(0, 1, width), (height, 1)), cmap)
    right = width - int(_font().getlength(high))
    return _with_text(bar, [((0, height + 3), low), ((right, height + 3), high)])


def shared_scale(results: Mapping[str, Explanation]) -> float:
    """The largest raw CAM value of all results: the top of one colour scale shared by all."""
    return max((float(r.raw_cam.max()) for r in results.values()), default=0.0) or 1.0


def cam_view(image: np.ndarray, result: Explanation, scale: float | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """The CAM on ``image``: normalized to [0, 1] per map (``scale`` None) or raw on [0, ``scale``]."""
    values, vmax = (result.cam, 1.0) if scale is None else (result.raw_cam, scale)
    return _outlined(overlay(image, values, cmap=CAM_CMAP, vmax=vmax), mask)


def stages(blocks: Sequence[str]) -> dict[str, list[int]]:
    """Block indices grouped by stage, in network order: {"layer1": [0, 1], ...}."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(blocks):
        groups.setdefault(name.split(".")[0], []).append(i)
    return groups


def attention_grid(image: np.ndarray, blocks: Sequence[str], maps: Sequence[np.ndarray], mask: np.ndarray | None = None,
                   shared: bool = True, tile: int = 128, max_cols: int = 6) -> np.ndarray:
    """Spatial attention of every CBAM block on ``image``, grouped by stage (two stages side by side when
    they fit in ``max_cols`` tiles), a caption per tile (block, value range) and a colour bar.
    ``shared``: every map on [0, 1], else each on its own range."""
    groups = stages(blocks)
    cols = max((len(g) for g in groups.values()), default=1)
    per_row = 2 if 2 * cols <= max_cols else 1
    label_w, cap_h = 64, 2 * (FONT_SIZE + 3)  # caption: the block, then its value range
    section_w = label_w + cols * (tile + PAD)
    base = _resize(image, tile, tile)
    height = -(-len(groups) // per_row) * (tile + cap_h + PAD) + 34
    canvas = np.full((height, per_row * section_w, 3), 255, np.uint8)
    texts: list[Text] = []
    for k, (stage, indices) in enumerate(groups.items()):
        x0, y = (k % per_row) * section_w, (k // per_row) * (tile + cap_h + PAD)
        h, w = maps[indices[0]].shape
        texts += [((x0, y + tile // 2 - 16), stage), ((x0, y + tile // 2 + 2), f"{h}x{w}")]
        for col, i in enumerate(indices):
            values = maps[i]
            lo, hi = float(values.min()), float(values.max())
            vmin, vmax = (0.0, 1.0) if shared else (lo, hi if hi > lo else lo + 1e-6)
            x = x0 + label_w + col * (tile + PAD)
            tinted = overlay(base, values, alpha=0.6, cmap=ATTENTION_CMAP, vmin=vmin, vmax=vmax)
            canvas[y:y + tile, x:x + tile] = _outlined(tinted, mask)
            texts += [((x, y + tile + 2), blocks[i]), ((x, y + tile + 2 + FONT_SIZE + 3), f"{lo:.2f} to {hi:.2f}")]
    low, high = ("0 suppressed", "1 kept") if shared else ("min of each map", "max of each map")
    bar_w = min(canvas.shape[1] - label_w - PAD, 320)
    bar = colorbar(ATTENTION_CMAP, bar_w, low, high)
    canvas[height - bar.shape[0]:, label_w:label_w + bar_w] = bar
    return _with_text(canvas, texts)


def channel_heatmap(blocks: Sequence[str], channel: Sequence[np.ndarray], width: int = 384, row: int = 14) -> np.ndarray:
    """Channel attention, blocks x channels: each block's channels sorted from highest to lowest
    attention and resampled to ``width`` columns, so blocks of different widths line up; colour bar."""
    label_w, gap, top = 124, 3, FONT_SIZE + 8
    order = [(i, stage) for stage, indices in enumerate(stages(blocks).values()) for i in indices]
    y_of = {i: top + n * row + stage * gap for n, (i, stage) in enumerate(order)}  # a gap between stages
    height = top + len(order) * row + (order[-1][1] + 1) * gap + 32
    canvas = np.full((height, label_w + width + PAD, 3), 255, np.uint8)
    texts: list[Text] = [((label_w, 0), "channels sorted by attention: highest -> lowest")]
    for i, values in enumerate(channel):
        ranked = np.sort(values)[::-1]
        resampled = np.interp(np.linspace(0, 1, width), np.linspace(0, 1, len(ranked)), ranked)
        canvas[y_of[i]:y_of[i] + row - 1, label_w:label_w + width] = colorize(resampled[None], ATTENTION_CMAP)
        texts.append(((0, y_of[i]), f"{blocks[i]} ({len(values)})"))
    bar = colorbar(ATTENTION_CMAP, width, "0 suppressed", "1 kept")
    canvas[height - bar.shape[0]:, label_w:label_w + width] = bar
    return _with_text(canvas, texts)


def unique_names(names: Sequence[str]) -> list[str]:
    """Class names made unique: a repeated name gets its index appended ("crane (517)")."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [f"{name} ({i})" if counts[name] > 1 else name for i, name in enumerate(names)]


def _cell(text: object) -> str:
    """Text for a Markdown table cell: ``|`` escaped."""
    return str(text).replace("|", "\\|")


def _ranked_table(corner: str, columns: Mapping[str, Sequence[str]], k: int) -> str:
    """Markdown: rank 1..k down, one column per heading; ``|`` in any text is escaped."""
    rows = [f"| {rank + 1} | " + " | ".join(_cell(col[rank]) if rank < len(col) else "" for col in columns.values())
            + " |" for rank in range(k)]
    head = f"| {_cell(corner)} | " + " | ".join(_cell(title) for title in columns) + " |"
    return "\n".join([head, "|---" * (len(columns) + 1) + "|", *rows])


def top_k_table(results: Mapping[str, Explanation], names: Sequence[str], titles: Mapping[str, str],
                k: int = 5) -> str:
    """Markdown: the ``k`` most probable classes of every model, one column per model."""
    return _ranked_table(f"top-{k}", {titles[label]: [f"{names[i]} ({p:.1%})" for i, p in r.top_k(k)]
                                      for label, r in results.items()}, k)


def top_channels_table(channel: Mapping[str, np.ndarray], block: str | None, k: int = 8) -> str:
    """Markdown: the ``k`` channels with the highest attention in ``block``, one column per model."""
    if not channel:
        return "*No model of this set has attention blocks.*"
    return _ranked_table(f"top channels of {block}", {title: [f"channel {i}: {values[i]:.3f}" for i in
                                                              np.argsort(-values)[:k]]
                                                      for title, values in channel.items()}, k)


STRIP = TITLE_SIZE + 16  # a model's title strip: a rule, the title, a gap


def labelled(image: np.ndarray, text: str, side: str) -> np.ndarray:
    """``image`` with ``text`` on a white box in its bottom ``side`` ("left" or "right") corner (the halves
    of the before/after slider name their models)."""
    width, height = int(_font().getlength(text)) + 2 * PAD, FONT_SIZE + 2 * PAD
    width = min(width, image.shape[1])
    x = 0 if side == "left" else image.shape[1] - width
    y = image.shape[0] - height
    out = image.copy()
    out[y:, x:x + width] = 255
    return _with_text(out, [((x + PAD, y + PAD - 2), text)])


def titled(panels: Sequence[tuple[str, np.ndarray]]) -> np.ndarray | None:
    """Panels stacked top to bottom on white, each under its title (a rule between two models), below
    :data:`TOP` pixels left free for Gradio's label; None when there are none."""
    if not panels:
        return None
    width = max(p.shape[1] for _, p in panels)
    parts, texts, y = [np.full((TOP, width, 3), 255, np.uint8)], [], TOP
    for k, (title, panel) in enumerate(panels):
        strip = np.full((STRIP, width, 3), 255, np.uint8)
        if k:
            strip[2:4] = RULE
        body = np.full((panel.shape[0], width, 3), 255, np.uint8)
        body[:, :panel.shape[1]] = panel
        texts.append(((4, y + 8), title))
        parts += [strip, body]
        y += strip.shape[0] + body.shape[0]
    return _with_text(np.concatenate(parts), texts, TITLE_SIZE)


def _pred(result: Explanation, names: Sequence[str]) -> str:
    return f"**{names[result.prediction]}** ({result.probs[result.prediction]:.1%})"


def agreement(results: Mapping[str, Explanation], names: Sequence[str], titles: Mapping[str, str],
              truth: int | None = None, out_of_domain: str | None = None) -> str:
    """Markdown: each model's prediction and whether the models agree (and are right, if known).
    ``out_of_domain``: a warning that replaces the verdict (the models cannot know this image)."""
    predictions = {r.prediction for r in results.values()}
    lines = [f"- {titles[label]}: {_pred(r, names)}"
             + ("" if r.target == r.prediction else f", explaining **{names[r.target]}**") for label, r in results.items()]
    if out_of_domain:
        return "\n".join([out_of_domain, *lines])
    agree = "all agree" if len(results) > 2 else "agree"
    head = f"**The models {agree}.**" if len(predictions) == 1 else "**The models disagree.**"
    if truth is not None:
        correct = [titles[label] for label, r in results.items() if r.prediction == truth]
        head += f" Ground truth: **{names[truth]}**; correct: {', '.join(correct) or ('neither' if len(results) == 2 else 'none')}."
    return "\n".join([head, *lines])


def cam_caption(title: str, result: Explanation, names: Sequence[str]) -> str:
    """A CAM's caption: the model, the class its map explains and that class's probability."""
    return f"{title} · explains {names[result.target]} ({result.probs[result.target]:.1%})"


def localization(results: Mapping[str, Explanation], titles: Mapping[str, str], mask: np.ndarray,
                 names: Sequence[str], truth: int | None) -> str:
    """Markdown table: pointing game, AUC, rank hit, energy in the mask's box and concentration of each
    CAM against ``mask``; a map of any class but the ground truth ``truth`` is not scored."""
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    rows = ["| model | pointing game | AUC | rank hit | energy in box | concentration |", "|---|---|---|---|---|---|"]
    for label, r in results.items():
        if r.target != truth:
            rows.append(f"| {_cell(titles[label])} | explains {_cell(names[r.target])}: not scored | | | | |")
            continue
        hit = "hit" if pointing_game(r.cam, mask, feature_shape=r.raw_cam.shape) else "miss"  # as `evaluate` scores
        rows.append(f"| {_cell(titles[label])} | {hit} | {roc_auc(r.cam, mask):.2f} | {rank_hit(r.cam, mask):.2f} "
                    f"| {energy_pointing_game(r.cam, box):.1%} | {concentration(r.cam):.1%} |")
    return "\n".join(rows)


def legend(shared: bool, scale: float | None = None, models: int = 2) -> str:
    """Markdown: what the colours of every panel mean, for a set of ``models`` models."""
    every = "both models" if models == 2 else f"all {models} models"
    cam = (f"raw CAM values (after ReLU) on one scale shared by {every}, blue = 0 to red = {scale:.3g}"
           if shared else "each CAM normalized to its own range: blue = its minimum, red = its maximum")
    spatial = ("the gate's value on a fixed scale, dark purple = 0 (suppressed) to yellow = 1 (kept)"
               if shared else "each map stretched to its own range, printed under it (purple = min, yellow = max)")
    return "\n".join([
        f"- **CAM overlays** (jet): {cam}.",
        f"- **Spatial attention** (viridis): {spatial}.",
        ("- **Channel attention** (viridis): the gate value of every channel, 0 = suppressed, 1 = kept; "
         "each row is one block of that model (its SE or CBAM channel gate), its channels sorted from the highest "
         "value (left) to the lowest."),
        "- A white outline marks the ground-truth object, where the image has one.",
    ])
