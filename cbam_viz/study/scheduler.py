"""Deterministic per-participant trial lists: balanced, blinded model pairs, catch and practice trials.

A study compares 2-4 models. Each trial shows one stimulus with the maps of two of them as A and B:
every pair of models is used equally often (within one), and each pair's sides alternate, so every
model is A as often as B. Catch trials (an obvious answer: one map on the object, one on the empty
background) sit at random positions; practice trials come first and are never stored as votes.
"""
from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .config import Stimulus

BASELINE = "baseline"
CBAM = "cbam"
MODELS = (BASELINE, CBAM)  # a study's default models (and the blind vote's, see free.default_models)
TRIAL, CATCH, PRACTICE = "trial", "catch", "practice"
KINDS = (TRIAL, CATCH, PRACTICE)
OBJECT, BACKGROUND = "object", "background"  # a catch trial's two maps


@dataclass(frozen=True)
class Trial:
    """One assigned trial. `model_a` / `model_b` are the models shown as "A" / "B" (server-side only);
    on a catch trial they are OBJECT and BACKGROUND."""

    position: int
    stimulus_id: str
    model_a: str
    model_b: str
    is_repeat: bool = False
    target_class: str | None = None
    kind: str = TRIAL


def participant_rng(study: str, participant_id: str, secret: str = "") -> random.Random:
    """A random generator seeded by (study, participant id, the study's server-side secret).

    Without the secret, anyone who knows the study's name and a participant id could rebuild the
    trial list offline and learn which model is A; the store keeps one random secret per study.
    """
    digest = hashlib.sha256(f"{study}\x00{participant_id}\x00{secret}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def balanced_pairs(models: Sequence[str], count: int, rng: random.Random) -> list[tuple[str, str]]:
    """`count` (A, B) model pairs in a random order: every unordered pair used equally often (within
    one), each pair's sides alternating from a random start (so A/B counts differ by at most one)."""
    pairs = list(itertools.combinations(models, 2))
    flipped = {pair: rng.random() < 0.5 for pair in pairs}
    out: list[tuple[str, str]] = []
    while len(out) < count:
        block = list(pairs)
        rng.shuffle(block)
        for pair in block:
            out.append(pair[::-1] if flipped[pair] else pair)
            flipped[pair] = not flipped[pair]
    out = out[:count]
    rng.shuffle(out)
    return out


def build_trials(
    study: str, participant_id: str, stimuli: Sequence[Stimulus], count: int, repeat: bool = False,
    secret: str = "", models: Sequence[str] = MODELS, catch: int = 0, catch_stimuli: Sequence[Stimulus] = (),
    practice: int = 0,
) -> list[Trial]:
    """`count` distinct stimuli in a random order, each with a pair of `models` (`balanced_pairs`).
    With `repeat`, one trial from the first half is shown again with sides swapped, later, with at
    least one trial in between. `catch` trials on `catch_stimuli` (those with ground truth; ones the
    participant does not otherwise see first) go to random positions, the object map on a random side.
    `practice` trials, on stimuli outside the participant's list where possible, come first."""
    if not 1 <= count <= len(stimuli):
        raise ValueError(f"need 1 <= count <= {len(stimuli)} stimuli, got {count}")
    if repeat and count < 2:
        raise ValueError("a repeat trial needs count >= 2")
    if len(set(models)) < 2:
        raise ValueError(f"need at least two distinct models, got {list(models)}")
    if catch and not catch_stimuli:
        raise ValueError("catch trials need stimuli with ground truth")
    rng = participant_rng(study, participant_id, secret)
    chosen = rng.sample(list(stimuli), count)
    plan = [(s, a, b, False, TRIAL) for s, (a, b) in zip(chosen, balanced_pairs(models, count, rng), strict=True)]
    if repeat:
        original = rng.randrange(count // 2)
        stimulus, a, b, _, _ = plan[original]
        plan.insert(rng.randint(max(original + 2, (count + 1) // 2), count), (stimulus, b, a, True, TRIAL))
    seen = {s.id for s in chosen}
    for stimulus in _draw(catch_stimuli, catch, seen, rng):
        sides = (OBJECT, BACKGROUND) if rng.random() < 0.5 else (BACKGROUND, OBJECT)
        plan.insert(rng.randint(0, len(plan)), (stimulus, *sides, False, CATCH))
        seen.add(stimulus.id)
    first = [(s, *balanced_pairs(models, 1, rng)[0], False, PRACTICE) for s in _draw(stimuli, practice, seen, rng)]
    return [
        Trial(position=i, stimulus_id=s.id, model_a=a, model_b=b, is_repeat=rep, target_class=s.target_class, kind=kind)
        for i, (s, a, b, rep, kind) in enumerate(first + plan)
    ]


def _draw(stimuli: Sequence[Stimulus], n: int, avoid: set[str], rng: random.Random) -> list[Stimulus]:
    """`n` stimuli, distinct where possible, preferring those whose ids are not in `avoid`."""
    fresh = [s for s in stimuli if s.id not in avoid]
    rest = [s for s in stimuli if s.id in avoid]
    rng.shuffle(fresh)
    rng.shuffle(rest)
    pool = fresh + rest
    return [pool[i % len(pool)] for i in range(n)] if pool else []
