"""Deterministic per-participant trial lists with balanced, blinded A/B sides."""
from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .config import Stimulus

BASELINE = "baseline"
CBAM = "cbam"
MODELS = (BASELINE, CBAM)


@dataclass(frozen=True)
class Trial:
    """One assigned trial. `model_a` is the model shown as "A" (server-side only)."""

    position: int
    stimulus_id: str
    model_a: str
    is_repeat: bool = False
    target_class: str | None = None


def other_model(model: str) -> str:
    """The other model of the pair."""
    return CBAM if model == BASELINE else BASELINE


def participant_rng(study: str, participant_id: str, secret: str = "") -> random.Random:
    """A random generator seeded by (study, participant id, the study's server-side secret).

    Without the secret, anyone who knows the study's name and a participant id could rebuild the
    trial list offline and learn which model is A; the store keeps one random secret per study.
    """
    digest = hashlib.sha256(f"{study}\x00{participant_id}\x00{secret}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def build_trials(
    study: str, participant_id: str, stimuli: Sequence[Stimulus], count: int, repeat: bool = False,
    secret: str = "",
) -> list[Trial]:
    """`count` distinct stimuli in a random order; exactly half with the baseline as A (one extra
    either way when `count` is odd). With `repeat`, one trial from the first half is shown again
    with sides swapped, inserted later with at least one trial in between (count + 1 trials)."""
    if not 1 <= count <= len(stimuli):
        raise ValueError(f"need 1 <= count <= {len(stimuli)} stimuli, got {count}")
    if repeat and count < 2:
        raise ValueError("a repeat trial needs count >= 2")
    rng = participant_rng(study, participant_id, secret)
    chosen = rng.sample(list(stimuli), count)
    sides = [BASELINE] * (count // 2) + [CBAM] * (count // 2)
    if count % 2:
        sides.append(rng.choice(MODELS))
    rng.shuffle(sides)
    plan = [(s, side, False) for s, side in zip(chosen, sides, strict=True)]
    if repeat:
        original = rng.randrange(count // 2)
        stimulus, side, _ = plan[original]
        plan.insert(rng.randint(max(original + 2, (count + 1) // 2), count), (stimulus, other_model(side), True))
    return [
        Trial(position=i, stimulus_id=s.id, model_a=side, is_repeat=rep, target_class=s.target_class)
        for i, (s, side, rep) in enumerate(plan)
    ]
