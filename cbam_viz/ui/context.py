"""State shared by every tab of the app: the loaded model pairs and an explanation cache."""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..explain import Explanation, explain
from ..models.pairs import MODELS_DIR, Pair, PairUnavailable, default_device, load_pair, pair_names


def image_sha256(image: Image.Image) -> str:
    """Digest of the RGB pixels and size (what the models see), independent of file encoding."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


@dataclass(frozen=True)
class Timing:
    """Seconds an explanation waited for other requests (the models are shared) and then took."""

    waited: float
    computed: float
    cached: bool  # computed is then only the cache look-up


class AppContext:
    """Loads every pair of the manifest once; unavailable pairs keep their reason.

    ``explain`` results are cached (LRU) by pair, image digest, method, target and layer.
    """

    def __init__(self, pairs: list[str] | None = None, models_dir: Path = MODELS_DIR, device: str | None = None, cache_size: int = 256):
        self.device = device or default_device()
        self.pairs: dict[str, Pair] = {}
        self.unavailable: dict[str, str] = {}
        for name in pairs or pair_names(models_dir):
            try:
                self.pairs[name] = load_pair(name, models_dir, self.device)
            except PairUnavailable as e:
                self.unavailable[name] = str(e)
        self._cache: OrderedDict[tuple, dict[str, Explanation]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # one explanation at a time: the models are shared

    def add(self, pair: Pair) -> None:
        """Make ``pair`` available under its name (replacing a pair of that name, loaded or not)."""
        with self._lock:
            self.pairs[pair.name] = pair
            self.unavailable.pop(pair.name, None)
            self._cache = OrderedDict((k, v) for k, v in self._cache.items() if k[0] != pair.name)

    def pair(self, name: str) -> Pair:
        if name in self.pairs:
            return self.pairs[name]
        raise PairUnavailable(self.unavailable.get(name, f"unknown pair {name!r}"))

    def explain(self, pair: str, image: Image.Image, method: str = "gradcam", target: int | None = None,
                layer: str | None = None, digest: str | None = None) -> dict[str, Explanation]:
        return self.explain_timed(pair, image, method, target, layer, digest)[0]

    def explain_timed(self, pair: str, image: Image.Image, method: str = "gradcam", target: int | None = None,
                      layer: str | None = None, digest: str | None = None) -> tuple[dict[str, Explanation], Timing]:
        """:meth:`explain`, and how long it waited for other requests and then computed."""
        key = (pair, digest or image_sha256(image), method, target, layer)
        asked = time.perf_counter()
        with self._lock:
            started = time.perf_counter()
            cached = key in self._cache
            if cached:
                self._cache.move_to_end(key)
                result = self._cache[key]
            else:
                result = self._cache[key] = explain(self.pair(pair).models, image, target=target, method=method,
                                                    target_layer=layer)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return result, Timing(started - asked, time.perf_counter() - started, cached)


def random_imagenet_pair(device: str | None = None) -> Pair:
    """The ImageNet pair's architectures (ResNet-50, ResNet-50 + CBAM, 224 px) with random weights:
    for benchmarks on machines without the weight files. Every title says "random weights"."""
    from ..models import build_from_info
    from ..models.pairs import imagenet_info

    models = {}
    with torch.random.fork_rng(devices=[]):  # reproducible weights, caller's RNG untouched
        torch.manual_seed(0)
        for role, attention in (("baseline", None), ("cbam", "cbam")):
            info = imagenet_info(attention)
            info.name = f"{info.title} (random weights)"
            models[role] = build_from_info(info).to(device or default_device()).eval()
    return Pair("imagenet", "RANDOM WEIGHTS, for benchmarks: ImageNet-shaped ResNet-50 vs ResNet-50 + CBAM, 224 px; "
                "predictions and maps are meaningless", models)


def display_image(pair: Pair, image: Image.Image) -> np.ndarray:
    """The RGB uint8 image as the pair's models see it (resized/cropped), for overlays."""
    from ..models import crop_for_display

    return np.asarray(crop_for_display(image, pair.models["cbam"].info))
