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


@pytest.mark.parametrize("models, count", [(("baseline", "se", "cbam"), 20), (("a", "b", "c", "d"), 13),
                                           (("baseline", "se", "cbam"), 2)])
def test_every_pair_of_models_equally_often_with_sides_balanced(models, count) -> None:
    import itertools

    for pid in (f"p{i}" for i in range(40)):
        trials = build_trials("pilot", pid, STIMULI, count, models=models)
        assert all(t.model_a != t.model_b and {t.model_a, t.model_b} <= set(models) for t in trials)
        pairs = Counter(frozenset((t.model_a, t.model_b)) for t in trials)
        uses = [pairs[frozenset(p)] for p in itertools.combinations(models, 2)]
        assert max(uses) - min(uses) <= 1 and sum(uses) == count
        for pair in itertools.combinations(models, 2):  # each pair's sides alternate
            sides = Counter(t.model_a for t in trials if {t.model_a, t.model_b} == set(pair))
            assert abs(sides[pair[0]] - sides[pair[1]]) <= 1
    firsts = Counter(build_trials("pilot", f"q{i}", STIMULI, 6, models=models)[0].model_a for i in range(200))
    assert set(firsts) == set(models)  # sides random across participants


def test_catch_trials_at_random_positions_and_practice_first() -> None:
    with_truth = STIMULI[:10]
    positions = Counter()
    for pid in (f"p{i}" for i in range(60)):
        trials = build_trials("pilot", pid, STIMULI, 8, repeat=True, catch=2, catch_stimuli=with_truth, practice=2)
        assert [t.position for t in trials] == list(range(13))
        assert [t.kind for t in trials[:2]] == ["practice", "practice"]
        catch = [t for t in trials if t.kind == "catch"]
        main = [t for t in trials if t.kind == "trial"]
        assert len(catch) == 2 and len(main) == 9 and sum(t.is_repeat for t in main) == 1
        assert all({t.model_a, t.model_b} == {"object", "background"} for t in catch)
        assert all(t.stimulus_id in {s.id for s in with_truth} for t in catch)
        seen = {t.stimulus_id for t in main}
        assert not seen & {t.stimulus_id for t in trials[:2]}  # practice on images outside the list
        positions.update(t.position for t in catch)
    assert len(positions) >= 8  # anywhere after the practice trials, not in fixed slots
    sides = Counter(t.model_a for i in range(60) for t in build_trials("x", f"p{i}", STIMULI, 4, catch=1,
                                                                      catch_stimuli=with_truth) if t.kind == "catch")
    assert 15 <= sides["object"] <= 45  # the object's map is A about half the time
    with pytest.raises(ValueError, match="ground truth"):
        build_trials("pilot", "p1", STIMULI, 4, catch=1)
