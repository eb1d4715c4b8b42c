"""Stimulus maps for a study: each stimulus is explained once by the study's models and encoded as PNG
bytes (the image, one map per model) kept in memory for the life of the process. Stimuli with ground
truth also get the two maps of a catch trial, made from the real maps of the same image (`catch`).

Nothing here imports Gradio. Nothing but the pixels of a map may depend on its model: the maps are
never files (no name, timestamp or write order), and they are stored uncompressed (`encode_png`
with ``fixed_size``), so their byte length depends only on the image size, not on the content.
Only the in-memory `RenderedStimulus` knows which map is which model's.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .config import ConfigError, DemoStimuli, Stimulus, StudyConfig
from .records import ModelOutput, VoteMeta
from .catch import catch_cams

log = logging.getLogger(__name__)

DISPLAY_SIZE = 256  # images smaller than this are upscaled for the participant
ExplainFn = Callable[[Image.Image, int], Mapping[str, Any]]  # (image, target) -> {role: Explanation}


@dataclass(frozen=True)
class RenderedStimulus:
    """One stimulus, ready to show. `maps` and `meta` are server-side only (they unblind)."""

    stimulus_id: str
    target_index: int
    target_class: str
    image: bytes  # PNG of the image as displayed
    maps: Mapping[str, bytes]  # model role (and OBJECT/BACKGROUND with ground truth) -> PNG as displayed (equal lengths)
    meta: VoteMeta
    objective: Mapping[str, float] | None  # energy pointing game per model, where ground truth exists


@dataclass(frozen=True)
class ModelSide:
    """What the renderer needs to know about the pair, independent of how it is loaded."""

    class_names: Sequence[str]
    input_size: int
    resize: int | None
    checksums: Mapping[str, str | None]
    generator: str = "hard"  # demo stimuli: the generator difficulty the set was trained on


def resolve_target(name: str, class_names: Sequence[str]) -> int:
    """Index of class `name` (exact, else case-insensitive); ConfigError when it is not a class."""
    if name in class_names:
        return list(class_names).index(name)
    folded = [c.casefold() for c in class_names]
    if name.casefold() in folded:
        return folded.index(name.casefold())
    sample = ", ".join(list(class_names)[:8]) + (", ..." if len(class_names) > 8 else "")
    raise ConfigError(f"target class {name!r} is not a class of the model set (classes: {sample})")


def stimulus_targets(config: StudyConfig, stimuli: Sequence[Stimulus]) -> dict[str, str]:
    """Target class name of every stimulus: the demo sample's class, or the CSV's target_class."""
    from ..data import CLASSES, NUM_CLASSES

    targets = {}
    for s in stimuli:
        if isinstance(config.stimuli, DemoStimuli):
            targets[s.id] = CLASSES[s.index % NUM_CLASSES]  # render_sample's label rule
        else:
            targets[s.id] = s.target_class
    return targets


def box_to_input(box: tuple[int, int, int, int], image_size: tuple[int, int], input_size: int,
                 resize: int | None) -> tuple[int, int, int, int]:
    """Map a box (x0, y0, x1, y1) in image pixels to the model input (what `cam` covers): a plain
    square resize when `resize` is None, else resize of the short side then a centre crop."""
    w, h = image_size
    if resize is None:
        sx, sy, ox, oy = input_size / w, input_size / h, 0.0, 0.0
    else:
        scale = resize / min(w, h)
        new_w, new_h = round(w * scale), round(h * scale)
        sx = sy = scale
        ox, oy = round((new_w - input_size) / 2.0), round((new_h - input_size) / 2.0)
    x0, y0, x1, y1 = box
    clip = lambda v: int(min(max(v, 0), input_size))  # noqa: E731
    return (clip(np.floor(x0 * sx - ox)), clip(np.floor(y0 * sy - oy)),
            clip(np.ceil(x1 * sx - ox)), clip(np.ceil(y1 * sy - oy)))


class StimulusRenderer:
    """Turns a `Stimulus` into a `RenderedStimulus` (model call + PNG encoding, in memory)."""

    def __init__(self, config: StudyConfig, side: ModelSide, explain: ExplainFn,
                 display: Callable[[Image.Image], np.ndarray]):
        self.config = config
        self.side = side
        self._explain = explain
        self._display = display

    def load(self, stimulus: Stimulus) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
        """The stimulus image and its ground-truth box (demo samples; folder images with a box in the CSV)."""
        spec = self.config.stimuli
        if isinstance(spec, DemoStimuli):
            from ..data import DIFFICULTIES, render_sample

            size = int(min(max(self.side.resize or self.side.input_size, 32), 256))
            sample = render_sample(spec.seed, stimulus.index, size, difficulty=DIFFICULTIES[self.side.generator])
            return sample.image, sample.box
        from ..images import open_image

        return open_image(stimulus.path), stimulus.box

    def maps(self, stimulus: Stimulus, target: int) -> tuple[Image.Image, Mapping[str, Any], dict[str, np.ndarray],
                                                              tuple[int, int, int, int] | None]:
        """The image, the models' explanations, every map of the stimulus (model roles, and OBJECT and
        BACKGROUND with ground truth) and the ground-truth box in map pixels (None without one)."""
        image, box = self.load(stimulus)
        explanations = self._explain(image, target)
        cams = {model: explanations[model].cam for model in self.config.models}
        cam_box = None
        if box is not None:
            cam_box = box_to_input(box, image.size, self.side.input_size, self.side.resize)
            cams |= catch_cams(cams, cam_box, self.config.threshold)
        return image, explanations, cams, cam_box

    def __call__(self, stimulus: Stimulus, target_class: str) -> RenderedStimulus:
        from ..data import energy_pointing_game
        from ..render import overlay, threshold_regions

        target = resolve_target(target_class, self.side.class_names)
        image, explanations, cams, cam_box = self.maps(stimulus, target)
        big = display_pixels(self._display(image))
        shade = ((lambda cam: threshold_regions(big, cam, self.config.threshold))
                 if self.config.display == "threshold" else (lambda cam: overlay(big, cam)))
        objective = None
        if cam_box is not None:
            objective = {m: energy_pointing_game(cams[m], cam_box) for m in self.config.models}
        maps = {name: encode_png(shade(cam), fixed_size=True) for name, cam in cams.items()}
        names = self.side.class_names
        meta = vote_meta(explanations, names, target, self.side.checksums)
        return RenderedStimulus(stimulus.id, target, names[target], encode_png(big), maps, meta, objective)


def encode_png(pixels: np.ndarray, fixed_size: bool = False) -> bytes:
    """RGB pixels as PNG bytes with no metadata chunks. ``fixed_size``: stored without compression,
    so that the byte length is a function of the image size alone and cannot tell two maps apart
    (a compressed map's size would: smoother maps compress better)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(
        buffer, format="PNG", **({"compress_level": 0} if fixed_size else {}))
    return buffer.getvalue()


def vote_meta(explanations: Mapping[str, Any], class_names: Sequence[str], target: int,
              checksums: Mapping[str, str | None]) -> VoteMeta:
    """What is stored with a vote: the target and, per model role, the model's top-1 class, its
    probability and the model file's checksum."""
    outputs = {}
    for role, explanation in explanations.items():
        pred = int(explanation.prediction)
        outputs[role] = ModelOutput(class_names[pred], float(explanation.probs[pred]), checksums.get(role))
    return VoteMeta(target_class=class_names[target], outputs=outputs)


def display_pixels(pixels: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """The image as participants see it: enlarged (bicubic) to ``size`` on the long side when smaller."""
    h, w = pixels.shape[:2]
    if max(h, w) >= size:
        return pixels
    scale = size / max(h, w)
    return np.asarray(Image.fromarray(pixels).resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC))


class StimulusCache:
    """Renders every stimulus at most once; `get` blocks only when a stimulus is not ready yet.
    `warm()` renders all of them in a background thread (started once)."""

    def __init__(self, stimuli: Sequence[Stimulus], targets: Mapping[str, str],
                 render: Callable[[Stimulus, str], RenderedStimulus]):
        self.stimuli = {s.id: s for s in stimuli}
        self.targets = dict(targets)
        self._render = render
        self._done: dict[str, RenderedStimulus] = {}
        self._locks = {s.id: threading.Lock() for s in stimuli}
        self._warm_thread: threading.Thread | None = None
        self._warm_lock = threading.Lock()
        self.ready = threading.Event()

    def get(self, stimulus_id: str) -> RenderedStimulus:
        done = self._done.get(stimulus_id)
        if done is not None:
            return done
        if stimulus_id not in self.stimuli:
            raise KeyError(f"unknown stimulus {stimulus_id!r}")
        with self._locks[stimulus_id]:
            done = self._done.get(stimulus_id)
            if done is None:
                done = self._render(self.stimuli[stimulus_id], self.targets[stimulus_id])
                self._done[stimulus_id] = done
            return done

    def warm(self, first: Sequence[str] = ()) -> threading.Thread:
        """Render everything in the background (the ids in `first` first); idempotent."""
        with self._warm_lock:
            if self._warm_thread is None:
                order = list(dict.fromkeys([*first, *self.stimuli]))
                self._warm_thread = threading.Thread(target=self._warm_all, args=(order,),
                                                     name="study-stimuli", daemon=True)
                self._warm_thread.start()
            return self._warm_thread

    def _warm_all(self, order: Sequence[str]) -> None:
        start = time.perf_counter()
        try:
            for stimulus_id in order:
                self.get(stimulus_id)
            print(f"study stimuli: {len(order)} maps ready in {time.perf_counter() - start:.1f} s", flush=True)
        except Exception:  # surfaced again, with its message, by the request that needs it
            log.exception("rendering study stimuli failed")
        finally:
            self.ready.set()

    def catch_ids(self) -> list[str]:
        """Stimuli with ground truth (demo samples, folder images with a box): what catch trials may use."""
        return [sid for sid, s in self.stimuli.items() if s.index is not None or s.box is not None]

    def objective(self) -> dict[str, dict[str, float]]:
        """Energy pointing game per model role for every stimulus with ground truth (renders all)."""
        return {sid: dict(r.objective) for sid in self.stimuli
                if (r := self.get(sid)).objective is not None}


def renderer_from_context(ctx: Any, config: StudyConfig) -> StimulusRenderer:
    """A renderer on an `AppContext`'s loaded set (its cached explanations) for the models the study compares."""
    from ..service import display_image

    model_set = ctx.model_set(config.pair)
    info = model_set.info
    side = ModelSide(class_names=model_set.class_names, input_size=info.input_size, resize=info.resize,
                     checksums={role: model_set.entries.get(role, {}).get("sha256") for role in config.models},
                     generator=model_set.generator)

    def explain(image: Image.Image, target: int) -> dict[str, Any]:
        results = ctx.explain(config.pair, image, config.method, target)
        return {role: results[role] for role in config.models}

    return StimulusRenderer(config, side, explain=explain, display=lambda image: display_image(model_set, image))
