"""Trial lists: deterministic, no repeated stimulus, balanced sides, one later swapped repeat."""
from __future__ import annotations

from collections import Counter

import pytest

from cbam_viz.study import BASELINE, CBAM, Stimulus, build_trials

STIMULI = [Stimulus(id=f"img{i}", target_class=f"class{i}") for i in range(30)]


def test_same_participant_same_list_other_participant_other_order() -> None:
    first = build_trials("pilot", "p1", STIMULI, 20)
    assert build_trials("pilot", "p1", STIMULI, 20) == first
    assert [t.stimulus_id for t in build_trials("pilot", "p2", STIMULI, 20)] != [t.stimulus_id for t in first]
    assert [t.stimulus_id for t in build_trials("other", "p1", STIMULI, 20)] != [t.stimulus_id for t in first]


@pytest.mark.parametrize("count", [1, 2, 7, 20, 30])
def test_distinct_stimuli_and_balanced_sides(count: int) -> None:
    for pid in (f"p{i}" for i in range(50)):
        trials = build_trials("pilot", pid, STIMULI, count)
        assert [t.position for t in trials] == list(range(count))
        assert len({t.stimulus_id for t in trials}) == count
        assert not any(t.is_repeat for t in trials)
        sides = Counter(t.model_a for t in trials)
        assert sides[BASELINE] in (count // 2, (count + 1) // 2) and sides[BASELINE] + sides[CBAM] == count
        assert all(t.target_class == "class" + t.stimulus_id[3:] for t in trials)


def test_order_and_sides_vary_across_participants() -> None:
    lists = [build_trials("pilot", f"p{i}", STIMULI, 20) for i in range(40)]
    assert len({t.stimulus_id for trials in lists for t in trials[:1]}) > 10  # first image varies
    assert len({tuple(t.model_a for t in trials) for trials in lists}) == 40


@pytest.mark.parametrize("count", [2, 3, 8, 20])
def test_repeat_trial_is_later_and_swapped(count: int) -> None:
    for pid in (f"p{i}" for i in range(50)):
        trials = build_trials("pilot", pid, STIMULI, count, repeat=True)
        assert len(trials) == count + 1 and [t.position for t in trials] == list(range(count + 1))
        (repeat,) = [t for t in trials if t.is_repeat]
        (original,) = [t for t in trials if t.stimulus_id == repeat.stimulus_id and not t.is_repeat]
        assert original.position < count // 2
        assert repeat.position - original.position >= 2  # at least one trial in between
        assert repeat.model_a != original.model_a
        firsts = [t for t in trials if not t.is_repeat]
        assert len({t.stimulus_id for t in firsts}) == count
        assert Counter(t.model_a for t in firsts)[BASELINE] in (count // 2, (count + 1) // 2)


def test_impossible_requests() -> None:
    with pytest.raises(ValueError, match="count"):
        build_trials("pilot", "p1", STIMULI, 31)
    with pytest.raises(ValueError, match="repeat"):
        build_trials("pilot", "p1", STIMULI, 1, repeat=True)


def test_the_study_secret_changes_the_trial_list():
    """Sides cannot be rebuilt from public inputs (study name, participant id) without the secret."""
    public = build_trials("pilot", "p1", STIMULI, 20)
    assert build_trials("pilot", "p1", STIMULI, 20, secret="a" * 32) == build_trials("pilot", "p1", STIMULI, 20, secret="a" * 32)
    salted = [build_trials("pilot", "p1", STIMULI, 20, secret=f"{i:032x}") for i in range(5)]
    assert all(trials != public for trials in salted)
    assert len({tuple(t.model_a for t in trials) for trials in salted}) > 1
