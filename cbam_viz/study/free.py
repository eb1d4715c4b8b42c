"""Blinded A/B votes on the user's own upload (the Compare tab), free of Gradio.

`prepare` explains the image with two models of the set (the two the user compares on the slider,
else the baseline and CBAM) for one class (the class the two find most likely on average), encodes
the two maps as equal-length PNG bytes (`stimuli.encode_png`) and draws the side at random. The
returned `FreeTrial` stays on the server (a Gradio `State`); the browser gets only the two maps'
bytes and the question. Votes name the two models and carry the image's SHA-256 (of the RGB pixels
and size, `cbam_viz.service.image_sha256`); the image itself is stored only when the app's owner enables
it (`upload_dir`, the app's `--store-uploads`), as `<upload_dir>/<sha256>.png` once a vote is cast.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..fileio import atomic_write
from .config import DEFAULT_ANSWERS
from .credentials import Credentials
from .scheduler import BASELINE, CBAM
from .session import response_time
from .stimuli import display_pixels, encode_png, vote_meta
from .records import RecordedVote, VoteMeta, VoteRejected, new_participant_id
from .storage import Store

QUESTION = "Which map better covers the {target}?"


def default_models(roles: Sequence[str]) -> tuple[str, str]:
    """The two models a blind vote compares when none are chosen: the baseline and CBAM when the set
    has both, else its first and last models."""
    return (BASELINE, CBAM) if {BASELINE, CBAM} <= set(roles) else (roles[0], roles[-1])


def blind_pair(roles: Sequence[str], chosen: Sequence[object] | None) -> tuple[str, str]:
    """The two models a blind vote shows: `chosen` when it names two different models, else
    `default_models(roles)` (none or only one chosen, or the same one twice). Raises VoteRejected for a
    name that is not a model of the set."""
    pair = tuple(model for model in chosen or () if model not in (None, ""))
    for model in pair:
        if model not in roles:
            raise VoteRejected(f"unknown model {str(model)[:64]!r} for the blind vote; the set has {', '.join(roles)}")
    if len(pair) == 2 and pair[0] != pair[1]:
        return pair  # type: ignore[return-value]
    return default_models(roles)


@dataclass(frozen=True)
class FreeTrial:
    """A prepared free vote. Server-side only: `shown_as_a`, `shown_as_b` and `meta` unblind it."""

    image_sha256: str
    pair: str
    method: str
    shown_as_a: str
    shown_as_b: str
    target_class: str
    map_a: bytes
    map_b: bytes
    meta: VoteMeta
    shown_at: float
    image: Image.Image | None = None  # kept only when uploads are stored

    @property
    def question(self) -> str:
        """The question shown above the two maps."""
        return QUESTION.format(target=self.target_class)


class FreeVotes:
    """Prepares and records free votes for an `AppContext` and a `Store`."""

    def __init__(self, ctx: Any, store: Store, credentials: Credentials,
                 clock: Callable[[], float] = time.monotonic, upload_dir: str | Path | None = None) -> None:
        self.ctx = ctx
        self.store = store
        self.credentials = credentials
        self.upload_dir = Path(upload_dir) if upload_dir else None
        self._clock = clock

    def prepare(self, image: Image.Image, pair: str, method: str,
                models: Sequence[object] | None = None) -> FreeTrial:
        """Explain `image` with two models of set `pair` and draw which one is shown as A: `models` (the
        two the user compares, e.g. on the Compare tab's slider) when they are two different models of the
        set, else `default_models`."""
        from ..render import overlay
        from ..service import display_image, image_sha256

        if image is None:
            raise VoteRejected("upload an image first")
        if not pair or not method:
            raise VoteRejected("choose a model set and a method first")
        loaded = self.ctx.model_set(pair)
        shown = blind_pair(loaded.roles, models)
        digest = image_sha256(image)
        first = self.ctx.explain(pair, image, method, None, digest=digest)
        mean_probs = sum(np.asarray(first[m].probs) for m in shown) / len(shown)
        target = int(mean_probs.argmax())
        result = self.ctx.explain(pair, image, method, target, digest=digest)
        big = display_pixels(display_image(loaded, image))
        maps = {m: encode_png(overlay(big, result[m].cam), fixed_size=True) for m in shown}
        names = loaded.class_names
        shown_as_a, shown_as_b = shown if secrets.randbelow(2) else shown[::-1]
        meta = vote_meta({m: result[m] for m in shown}, names, target,
                         {m: loaded.entries.get(m, {}).get("sha256") for m in shown})
        return FreeTrial(digest, pair, method, shown_as_a, shown_as_b, names[target], maps[shown_as_a],
                         maps[shown_as_b], meta, self._clock(),
                         image.convert("RGB") if self.upload_dir else None)

    def vote(self, trial: FreeTrial | None, credential: str | None, answer: str,
             response_ms: object = None) -> tuple[RecordedVote, str]:
        """Store the answer to `trial` as the voter of `credential` (a new voter, with an id issued
        here, when it is empty or invalid); returns the vote and the voter's credential."""
        if trial is None:
            raise VoteRejected("show the blinded maps first")
        if answer not in DEFAULT_ANSWERS:
            raise VoteRejected(f"answer {answer!r} is not one of {list(DEFAULT_ANSWERS)}")
        response_ms = response_time(response_ms)
        if response_ms is None:  # no browser timing: the server's
            response_ms = int(round((self._clock() - trial.shown_at) * 1000))
        voter_id = self.credentials.verify(credential) or new_participant_id()
        recorded = self.store.record_free_vote(
            voter_id, trial.image_sha256, answer, trial.shown_as_a, trial.shown_as_b, pair=trial.pair, method=trial.method,
            response_ms=response_ms, meta=trial.meta)
        if self.upload_dir and trial.image is not None:
            self.upload_dir.mkdir(parents=True, exist_ok=True)
            path = self.upload_dir / f"{trial.image_sha256}.png"
            if not path.exists():
                atomic_write(path, lambda f: trial.image.save(f, format="PNG"))
        return recorded, self.credentials.issue(voter_id)
