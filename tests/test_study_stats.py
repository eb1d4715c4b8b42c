"""Statistics against hand-computed values and scipy."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from scipy.stats import binomtest

from cbam_viz.study import Proportion, VoteRecord, compute_stats, summary_markdown, wilson_interval


def vote(participant: str, stimulus: str, shown_as_a: str, answer: str, is_repeat: bool = False,
         shown_as_b: str | None = None, kind: str = "trial") -> VoteRecord:
    return VoteRecord(
        vote_id=0, study="pilot", pair="resnet50", participant_id=participant, expertise=None, position=0,
        stimulus_id=stimulus, is_repeat=is_repeat, kind=kind, shown_as_a=shown_as_a,
        shown_as_b=shown_as_b or ("cbam" if shown_as_a == "baseline" else "baseline"), answer=answer,
        response_ms=1000, too_fast=False, created_at=datetime(2026, 1, 1, tzinfo=UTC), method="gradcam",
        target_class="cat", pred_a=None, prob_a=None, checksum_a=None, pred_b=None, prob_b=None, checksum_b=None,
        app_version="0.1.0", image_sha256=None,
    )


# chosen model in the trailing comment
VOTES = [
    vote("p1", "img1", "cbam", "A"),  # cbam
    vote("p1", "img2", "baseline", "A"),  # baseline
    vote("p1", "img3", "cbam", "B"),  # baseline
    vote("p1", "img4", "baseline", "B"),  # cbam
    vote("p1", "img5", "cbam", "same"),
    vote("p2", "img1", "baseline", "B"),  # cbam
    vote("p2", "img2", "cbam", "A"),  # cbam
    vote("p2", "img3", "baseline", "neither"),
    vote("p2", "img4", "cbam", "A"),  # cbam
    vote("p3", "img1", "cbam", "A"),  # cbam
    vote("p3", "img1", "baseline", "B", is_repeat=True),  # cbam again: consistent, other letter
    vote("p2", "img2", "baseline", "A", is_repeat=True),  # baseline now: inconsistent, same letter
    vote("p1", "img9", "object", "B", shown_as_b="background", kind="catch"),  # an attention check: not counted
]
OBJECTIVE = {"img1": {"baseline": 0.5, "cbam": 0.8}, "img2": {"baseline": 0.7, "cbam": 0.6},
             "img3": {"baseline": 0.5, "cbam": 0.5}}


def test_wilson_interval_by_hand_and_against_scipy() -> None:
    # 7/10, z = 1.959964: centre (0.7 + z²/20) / (1 + z²/10) = 0.644492, half-width 0.247715
    low, high = wilson_interval(7, 10)
    assert (low, high) == pytest.approx((0.396778, 0.892209), abs=1e-6)
    for k, n in [(0, 5), (5, 5), (1, 3), (37, 60)]:
        expected = binomtest(k, n).proportion_ci(method="wilson")
        assert wilson_interval(k, n) == pytest.approx((expected.low, expected.high), abs=1e-12)
    with pytest.raises(ValueError):
        wilson_interval(3, 0)


def test_binomial_p_by_hand() -> None:
    assert Proportion.of(9, 10).p_value == pytest.approx(2 * 11 / 1024)  # 2 * P(X >= 9), X ~ Bin(10, 1/2)
    assert Proportion.of(6, 8).p_value == pytest.approx(2 * 37 / 256)
    assert Proportion.of(5, 10).p_value == pytest.approx(1.0)
    assert Proportion.of(0, 0) == Proportion(0, 0, None, None, None, None)


def test_study_figures() -> None:
    stats = compute_stats(VOTES, objective=OBJECTIVE)
    assert (stats.votes, stats.participants) == (10, 3)
    assert stats.answer_counts == {"A": 5, "B": 3, "same": 1, "neither": 1}
    assert stats.chosen_counts == {"baseline": 2, "cbam": 6, "same": 1, "neither": 1}
    (pair,) = stats.preferences
    pref = pair.preference
    assert (pair.first, pair.second) == ("baseline", "cbam")
    assert (pref.successes, pref.n, pref.share) == (6, 8, 0.75)
    assert pref.p_value == pytest.approx(2 * 37 / 256)
    assert (pref.ci_low, pref.ci_high) == pytest.approx(wilson_interval(6, 8))
    bias = stats.position_bias
    assert (bias.successes, bias.n) == (5, 8) and bias.p_value == pytest.approx(2 * 93 / 256)
    assert [(r.key, r.votes, r.chosen["cbam"], r.share) for r in stats.per_image] == [
        ("img1", 3, 3, 1.0), ("img2", 2, 1, 0.5), ("img3", 2, 0, 0.0), ("img4", 2, 2, 1.0), ("img5", 1, 0, None)]
    assert [(r.key, r.votes, r.chosen, r.share) for r in stats.per_participant] == [
        ("p1", 5, {"baseline": 2, "cbam": 2, "same": 1, "neither": 0}, 0.5),
        ("p2", 4, {"baseline": 0, "cbam": 3, "same": 0, "neither": 1}, 1.0),
        ("p3", 1, {"baseline": 0, "cbam": 1, "same": 0, "neither": 0}, 1.0)]
    c = stats.consistency
    assert (c.pairs, c.consistent, c.same_letter, c.share) == (2, 1, 1, 0.5)
    agree = stats.objective_agreement  # img1: 3 of 3 chose cbam (better); img2: 1 of 2 chose baseline (better)
    assert (agree.successes, agree.n) == (4, 5) and agree.p_value == pytest.approx(12 / 32)


def test_empty_study_and_missing_objective() -> None:
    stats = compute_stats([])
    assert stats.votes == 0 and stats.preferences[0].preference.n == 0 and stats.objective_agreement is None
    assert stats.chosen_counts == {"baseline": 0, "cbam": 0, "same": 0, "neither": 0}
    assert "no decisive votes yet" in summary_markdown(stats)
    with pytest.raises(ValueError, match="need keys"):
        compute_stats(VOTES, objective={"img1": {"cbam": 1.0}})


def test_summary_markdown_shows_the_figures() -> None:
    text = summary_markdown(compute_stats(VOTES, objective=OBJECTIVE), title="Pilot")
    assert text.startswith("## Pilot\n")
    assert "6/8 = 75.0% (95% CI 40.9%–92.9%, binomial p = 0.289)" in text
    assert "1/2 = 50.0% chose the same model (1 the same letter)" in text
    assert "4/5 = 80.0%" in text
    assert "| img5 | 1 | 0 | 0 | 1 | 0 | – |" in text


def test_three_models_every_pair_and_no_single_share() -> None:
    models = ("baseline", "se", "cbam")
    votes = [vote("p1", "i1", "baseline", "B", shown_as_b="se"),   # se over baseline
             vote("p1", "i2", "cbam", "A", shown_as_b="se"),       # cbam over se
             vote("p2", "i1", "cbam", "B", shown_as_b="baseline"),  # baseline over cbam
             vote("p2", "i2", "se", "B", shown_as_b="cbam"),       # cbam over se
             vote("p2", "i3", "se", "same", shown_as_b="baseline")]
    objective = {"i2": {"baseline": 0.1, "se": 0.2, "cbam": 0.9}}
    stats = compute_stats(votes, objective=objective, models=models)
    assert stats.chosen_counts == {"baseline": 1, "se": 1, "cbam": 2, "same": 1, "neither": 0}
    assert [(p.first, p.second, p.preference.successes, p.preference.n) for p in stats.preferences] == [
        ("baseline", "se", 1, 1), ("baseline", "cbam", 0, 1), ("se", "cbam", 2, 2)]
    assert all(r.share is None for r in stats.per_image)  # no single share beyond two models
    assert (stats.objective_agreement.successes, stats.objective_agreement.n) == (2, 2)  # i2: cbam twice
    text = summary_markdown(stats, names={"baseline": "Baseline", "se": "SE", "cbam": "CBAM"})
    assert "**Prefers CBAM** (of decisive votes, vs SE): 2/2" in text and "| i3 | 1 | 0 | 0 | 0 | 1 | 0 |" in text
