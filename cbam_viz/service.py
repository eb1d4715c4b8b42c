"""The application service shared by every tab, the study and the CLI: the loaded model sets and
an explanation cache. Built once (app.py) and passed down; thread-safe without a global lock.

`explain` is thread-safe on shared models (see `cbam_viz.explain`), so requests compute in parallel:
a cache hit never waits, and a slow request (Score-CAM) does not hold up anybody else's. Identical
requests in flight at the same time are computed once; the later ones wait for that result.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .explain import Cancelled, Explanation, default_target_layer, explain, forward_passes, seconds_per_pass
from .models.config import read_models_config
from .models.sets import MODELS_DIR, ModelSet, SetUnavailable, default_device, load_set, set_names


def image_sha256(image: Image.Image) -> str:
    """Digest of the RGB pixels and size (what the models see), independent of file encoding."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


@dataclass(frozen=True)
class Timing:
    """Where an explanation's time went."""

    waited: float  # seconds spent waiting for the same explanation computed by another request
    computed: float  # seconds computing (0 for a cache hit or a result computed by another request)
    cached: bool  # served from the cache (or from another request's computation)
    alongside: int  # other explanations computing when this one started (they share the CPU/GPU)


class AppContext:
    """Loads every model set of the manifest once; unavailable sets keep their reason.

    ``explain`` results are cached (LRU) by set, image digest, method, target and layer.
    """

    def __init__(self, sets: list[str] | None = None, models_dir: Path = MODELS_DIR, device: str | None = None,
                 cache_size: int = 256, user_models: Path | None = None):
        """``user_models``: a models TOML file (`cbam_viz.models.config`) whose sets are loaded too."""
        self.device = device or default_device()
        self.sets: dict[str, ModelSet] = {}
        self.unavailable: dict[str, str] = {}
        user = read_models_config(user_models) if user_models else None
        for name in sets or set_names(models_dir, user):
            try:
                self.sets[name] = load_set(name, models_dir, self.device, user)
            except SetUnavailable as e:
                self.unavailable[name] = str(e)
        self._cache: OrderedDict[tuple, dict[str, Explanation]] = OrderedDict()
        self._cache_size = cache_size
        self._running: dict[tuple, Future] = {}  # explanations being computed, by cache key
        self._pass_seconds: dict[str, dict[str, float]] = {}  # set -> role -> seconds per forward pass per image
        self._lock = threading.Lock()  # guards the dicts only, never a model call

    def add(self, model_set: ModelSet) -> None:
        """Make ``model_set`` available under its name (replacing a set of that name, loaded or not)."""
        with self._lock:
            self.sets[model_set.name] = model_set
            self.unavailable.pop(model_set.name, None)
            self._cache = OrderedDict((k, v) for k, v in self._cache.items() if k[0] != model_set.name)

    def measure_speed(self) -> dict[str, float]:
        """Time one forward pass of every model of every loaded set on this device (start-up: a few seconds on a
        CPU for ResNet-50s); :meth:`estimate` uses it. Returns seconds per image and pass, summed per set."""
        for name, model_set in list(self.sets.items()):
            speed = {role: seconds_per_pass(model) for role, model in model_set.models.items()}
            with self._lock:
                self._pass_seconds[name] = speed
        return {name: sum(speed.values()) for name, speed in self._pass_seconds.items()}

    def estimate(self, model_set: str, method: str, layer: str | None = None) -> float | None:
        """Estimated seconds to explain one image with every model of ``model_set`` at ``layer`` (default: the last
        block) as forward passes x measured time per pass; None when the set is not measured
        (:meth:`measure_speed`) or an argument is unknown."""
        speed = self._pass_seconds.get(model_set) if isinstance(model_set, str) else None
        if speed is None or model_set not in self.sets or not isinstance(method, str):
            return None
        try:
            return sum(forward_passes(model, method, layer if isinstance(layer, str) else default_target_layer(model))
                       * speed[role] for role, model in self.sets[model_set].models.items())
        except (AttributeError, KeyError, TypeError):
            return None

    def model_set(self, name: str) -> ModelSet:
        if name in self.sets:
            return self.sets[name]
        raise SetUnavailable(self.unavailable.get(name, f"unknown model set {name!r}"))

    def explain(self, model_set: str, image: Image.Image, method: str = "gradcam", target: int | None = None,
                layer: str | None = None, digest: str | None = None) -> dict[str, Explanation]:
        """Every model of set ``model_set`` on ``image`` (see `cbam_viz.explain.explain`), cached."""
        return self.explain_timed(model_set, image, method, target, layer, digest)[0]

    def explain_timed(self, model_set: str, image: Image.Image, method: str = "gradcam", target: int | None = None,
                      layer: str | None = None, digest: str | None = None,
                      should_stop: Callable[[], bool] | None = None) -> tuple[dict[str, Explanation], Timing]:
        """:meth:`explain`, and where its time went. ``should_stop``: polled between batches; True raises
        `cbam_viz.explain.Cancelled` (a request waiting for the same result then computes it itself)."""
        key = (model_set, digest or image_sha256(image), method, target, layer)
        start = time.perf_counter()
        while True:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key], Timing(0.0, 0.0, True, len(self._running))
                running = self._running.get(key)
                if running is None:
                    mine = self._running[key] = Future()
                alongside = len(self._running) - 1
            if running is None:
                break
            try:  # the same request is being computed: wait for its result
                return running.result(), Timing(time.perf_counter() - start, 0.0, True, alongside)
            except Cancelled:  # its client has gone: compute it here
                continue
        start = time.perf_counter()
        try:
            result = explain(self.model_set(model_set).models, image, target=target, method=method, target_layer=layer,
                             should_stop=should_stop)
        except BaseException as exc:
            with self._lock:
                del self._running[key]
            mine.set_exception(exc)
            raise
        computed = time.perf_counter() - start
        with self._lock:
            self._cache[key] = result
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            del self._running[key]
        mine.set_result(result)
        return result, Timing(0.0, computed, False, alongside)


def random_imagenet_set(device: str | None = None) -> ModelSet:
    """The ImageNet set's architectures (ResNet-50, SE-ResNet-50, ResNet-50 + CBAM, 224 px) with random
    weights: for benchmarks on machines without the weight files. Every title says "random weights"."""
    from .models import build_from_info
    from .models.sets import imagenet_info

    models = {}
    with torch.random.fork_rng(devices=[]):  # reproducible weights, caller's RNG untouched
        torch.manual_seed(0)
        for role, attention in (("baseline", None), ("se", "se"), ("cbam", "cbam")):
            info = imagenet_info(attention)
            info.name = f"{info.title} (random weights)"
            models[role] = build_from_info(info).to(device or default_device()).eval()
    return ModelSet("imagenet", "RANDOM WEIGHTS, for benchmarks: ImageNet-shaped ResNet-50 vs SE-ResNet-50 vs "
                    "ResNet-50 + CBAM, 224 px; predictions and maps are meaningless", models)


def display_image(model_set: ModelSet, image: Image.Image) -> np.ndarray:
    """The RGB uint8 image as the set's models see it (resized/cropped), for overlays."""
    from .models import crop_for_display

    return np.asarray(crop_for_display(image, model_set.info))
