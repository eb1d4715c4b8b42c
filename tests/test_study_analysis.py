"""Study statistics on simulated votes with a known truth (cbam_viz.study.analysis)."""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy.stats import norm

from cbam_viz.data.metrics import wilson_interval
from cbam_viz.study.analysis import (
    Comparison,
    anova_icc,
    bradley_terry,
    by_expertise,
    clustered_interval,
    pairwise_table,
    participants_needed,
    per_stimulus,
    position_bias,
    rater_agreement,
)

MODELS = ["baseline", "se", "cbam", "cbam-b"]
TRUTH = np.array([-0.5, 0.0, 0.6, -0.1])  # log-strengths of MODELS, centred (mean 0)


def simulate(rng: np.random.Generator, strengths: np.ndarray = TRUTH, models: list[str] = MODELS,
             participants: int = 20, images: int = 10, participant_sd: float = 0.0, tie_rate: float = 0.0,
             first_bonus: float = 0.0, expertise: str | None = None, prefix: str = "p") -> list[Comparison]:
    """Every participant sees every image once per pair of models, sides at random. A participant's
    strengths deviate from ``strengths`` by N(0, participant_sd) per model; ``first_bonus`` is added
    to the log-odds of the model shown first; ties happen at ``tie_rate``."""
    out = []
    for p in range(participants):
        own = strengths + rng.normal(0, participant_sd, len(models)) if participant_sd else strengths
        for image in range(images):
            for i, j in combinations(range(len(models)), 2):
                if rng.random() < 0.5:
                    i, j = j, i
                if rng.random() < tie_rate:
                    winner = None
                else:
                    first_wins = rng.random() < 1 / (1 + math.exp(own[j] - own[i] - first_bonus))
                    winner = models[i] if first_wins else models[j]
                out.append(Comparison(f"{prefix}{p}", f"img{image}", models[i], models[j], winner, expertise))
    return out


# ------------------------------------------------------------------------------ Bradley-Terry


def test_bradley_terry_recovers_known_strengths_and_order():
    votes = simulate(np.random.default_rng(0), participants=40, tie_rate=0.1)
    ranking = bradley_terry(votes, MODELS)
    assert [s.model for s in ranking.strengths] == ["cbam", "se", "cbam-b", "baseline"]
    fitted = {s.model: s.strength for s in ranking.strengths}
    assert sum(fitted.values()) == pytest.approx(0, abs=1e-9)
    for model, truth in zip(MODELS, TRUTH):
        assert fitted[model] == pytest.approx(truth, abs=0.12)
    assert ranking.probability("cbam", "baseline") == pytest.approx(1 / (1 + math.exp(-1.1)), abs=0.04)
    # ties are left out of the fit and counted
    ties = sum(c.winner is None for c in votes)
    assert ranking.ties == ties > 0 and ranking.decisive == len(votes) - ties
    by_name = {s.model: s for s in ranking.strengths}
    assert by_name["cbam"].wins == sum(c.winner == "cbam" for c in votes)
    assert by_name["cbam"].ties == sum(c.winner is None and "cbam" in (c.first, c.second) for c in votes)
    assert ranking.participants == 40 and ranking.stimuli == 10
    assert ranking.clustered_by == ("participant", "stimulus")


def test_bradley_terry_intervals_cover_the_truth_at_the_nominal_rate():
    rng = np.random.default_rng(1)
    replicates, covered, covered_cluster = 120, 0, 0
    for _ in range(replicates):
        ranking = bradley_terry(simulate(rng, participants=12, images=6), MODELS)
        for s in ranking.strengths:
            truth = TRUTH[MODELS.index(s.model)]
            covered += s.ci_low <= truth <= s.ci_high
            covered_cluster += s.cluster_low <= truth <= s.cluster_high
    total = replicates * len(MODELS)
    assert 0.91 <= covered / total <= 0.99
    assert 0.91 <= covered_cluster / total <= 0.995


def test_clustered_bradley_terry_intervals_hold_when_participants_differ_and_per_vote_ones_do_not():
    """Each participant's strengths deviate from the truth by N(0, 1): their votes are correlated."""
    rng = np.random.default_rng(12)
    covered, covered_cluster, ratios = 0, 0, []
    for _ in range(60):
        ranking = bradley_terry(simulate(rng, participants=20, images=10, participant_sd=1.0), MODELS)
        for s in ranking.strengths:
            truth = TRUTH[MODELS.index(s.model)]
            covered += s.ci_low <= truth <= s.ci_high
            covered_cluster += s.cluster_low <= truth <= s.cluster_high
            ratios.append((s.cluster_high - s.cluster_low) / (s.ci_high - s.ci_low))
    assert covered / 240 < 0.7
    assert covered_cluster / 240 >= 0.87
    assert np.mean(ratios) > 1.8


def test_bradley_terry_refuses_what_cannot_be_ranked_yet():
    votes = [Comparison("p1", "i1", "a", "b", "a"), Comparison("p1", "i2", "b", "c", "b"),
             Comparison("p2", "i1", "c", "a", "a")]  # a always wins: its strength is infinite
    with pytest.raises(ValueError, match="cannot rank yet: .* prefers b, c to a;"):
        bradley_terry(votes, ["a", "b", "c"])
    with pytest.raises(ValueError, match="cannot rank yet"):  # "c" never compared
        bradley_terry([Comparison("p1", "i1", "a", "b", "a"), Comparison("p1", "i2", "b", "a", "a"),
                       Comparison("p2", "i2", "b", "a", "b")], ["a", "b", "c"])


@pytest.mark.parametrize("bad, message", [
    (Comparison("p", "i", "a", "a", "a"), "with itself"),
    (Comparison("p", "i", "a", "b", "c"), "neither"),
    (Comparison("p", "i", "a", "x", "a"), "not in"),
])
def test_malformed_comparisons_get_one_line_errors(bad, message):
    with pytest.raises(ValueError, match=message) as error:
        pairwise_table([bad], ["a", "b"])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="two or more distinct models"):
        bradley_terry([], ["a"])


# ---------------------------------------------------------------------------- pairwise table


def test_pairwise_table_counts_and_per_vote_wilson_interval():
    votes = ([Comparison(f"p{i}", f"i{i % 3}", "a", "b", "a") for i in range(7)]
             + [Comparison(f"p{i}", f"i{i % 3}", "b", "a", "b") for i in range(3)]
             + [Comparison("p0", "i0", "a", "b", None), Comparison("p1", "i1", "c", "a", "c")])
    rows = {(r.model, r.opponent): r for r in pairwise_table(votes, ["a", "b", "c"])}
    assert len(rows) == 6  # every ordered pair
    ab, ba = rows[("a", "b")], rows[("b", "a")]
    assert (ab.wins, ab.losses, ab.ties) == (7, 3, 1) and (ba.wins, ba.losses, ba.ties) == (3, 7, 1)
    assert ab.preference.share == pytest.approx(0.7) and ba.preference.share == pytest.approx(0.3)
    assert (ab.preference.per_vote.ci_low, ab.preference.per_vote.ci_high) == pytest.approx(wilson_interval(7, 10))
    assert ab.preference.cluster_low <= 0.7 <= ab.preference.cluster_high
    assert ab.preference.participants == 7 and ab.preference.stimuli == 3
    assert rows[("c", "a")].wins == 1 and rows[("b", "c")].preference.n == 0
    assert rows[("b", "c")].preference.cluster_low is None


def _heterogeneous_votes(rng: np.random.Generator, participants: int, images: int, spread: float
                         ) -> tuple[list[bool], list[str], list[str]]:
    """Participant p chooses the model on image s with probability 0.6 + a_p + b_s: a_p uniform in
    +-spread, b_s uniform in +-0.1, so the population share is exactly 0.6."""
    a = rng.uniform(-spread, spread, participants)
    b = rng.uniform(-0.1, 0.1, images)
    hits, who, what = [], [], []
    for p in range(participants):
        for s in range(images):
            hits.append(bool(rng.random() < 0.6 + a[p] + b[s]))
            who.append(f"p{p}")
            what.append(f"i{s}")
    return hits, who, what


def test_cluster_interval_covers_when_participants_differ_and_wilson_does_not():
    rng = np.random.default_rng(2)
    replicates, cluster_hits, wilson_hits, ratios = 100, 0, 0, []
    for _ in range(replicates):
        hits, who, what = _heterogeneous_votes(rng, participants=15, images=12, spread=0.3)
        low, high = clustered_interval(hits, who, what)
        w_low, w_high = wilson_interval(sum(hits), len(hits))
        cluster_hits += low <= 0.6 <= high
        wilson_hits += w_low <= 0.6 <= w_high
        ratios.append((high - low) / (w_high - w_low))
    assert cluster_hits / replicates >= 0.9
    assert wilson_hits / replicates < 0.85
    assert np.mean(ratios) > 1.5


def test_cluster_interval_is_close_to_wilson_when_nobody_differs_much():
    hits, who, what = _heterogeneous_votes(np.random.default_rng(3), participants=40, images=40, spread=0.0)
    low, high = clustered_interval(hits, who, what)
    w_low, w_high = wilson_interval(sum(hits), len(hits))
    assert 0.85 < (high - low) / (w_high - w_low) < 1.25
    assert clustered_interval([True] * 5 + [False], ["p"] * 6, ["i"] * 6) is None  # one cluster each
    assert clustered_interval([True] * 6, [f"p{i}" for i in range(6)], ["i"] * 6) is None  # all agree


def test_per_stimulus_rows_for_the_forest_plot():
    votes = simulate(np.random.default_rng(4), participants=5, images=3, tie_rate=0.2)
    rows = per_stimulus(votes, "cbam", "baseline")
    assert [r.stimulus for r in rows] == ["img0", "img1", "img2"]
    for r in rows:
        on_image = [c for c in votes if c.stimulus == r.stimulus and {c.first, c.second} == {"cbam", "baseline"}]
        assert r.preference.successes == sum(c.winner == "cbam" for c in on_image)
        assert r.preference.n + r.ties == len(on_image) == 5


# ------------------------------------------------------------------- agreement, position, groups


def test_rater_agreement_is_zero_for_random_raters_and_one_for_identical_ones():
    rng = np.random.default_rng(5)
    random_votes = simulate(rng, strengths=np.zeros(4), participants=30, images=20)
    agreement = rater_agreement(random_votes, n_boot=200)
    assert abs(agreement.alpha) < 0.03
    assert agreement.ci_low < agreement.alpha < agreement.ci_high
    assert agreement.units == 20 * 6 and agreement.raters == 30 and agreement.ratings == len(random_votes)
    assert agreement.percent == pytest.approx(0.5, abs=0.03)

    # identical raters: every participant gives the per-unit answer drawn once at random
    answer = {(c.stimulus, c.pair): rng.choice([*c.pair, None]) for c in random_votes}
    same = [Comparison(c.participant, c.stimulus, c.first, c.second, answer[(c.stimulus, c.pair)])
            for c in random_votes]
    agreement = rater_agreement(same, n_boot=200)
    assert agreement.alpha == pytest.approx(1.0) and agreement.percent == pytest.approx(1.0)
    assert rater_agreement(same, include_ties=False, n_boot=50).ratings < agreement.ratings
    # one rating per unit: nothing to agree on
    assert rater_agreement(random_votes[:1]).alpha is None


def test_position_bias_recovers_a_preference_for_the_left_side():
    votes = simulate(np.random.default_rng(6), strengths=np.zeros(4), participants=30, images=10,
                     first_bonus=math.log(0.7 / 0.3))
    bias = position_bias(votes)
    assert bias.overall.share == pytest.approx(0.7, abs=0.03)
    assert bias.overall.per_vote.ci_low <= 0.7 <= bias.overall.per_vote.ci_high
    assert bias.overall.cluster_low <= 0.7 <= bias.overall.cluster_high
    assert len(bias.per_participant) == 30 and sum(c.n for c in bias.per_participant) == len(votes)
    fair = position_bias(simulate(np.random.default_rng(7), strengths=np.zeros(4), participants=30))
    assert fair.overall.cluster_low <= 0.5 <= fair.overall.cluster_high


def test_by_expertise_ranks_each_group_on_its_own():
    rng = np.random.default_rng(8)
    experts = simulate(rng, participants=20, expertise="expert", prefix="e")
    novices = simulate(rng, strengths=-TRUTH, participants=20, expertise=None, prefix="n")
    few = [Comparison("x", "img0", "cbam", "se", "cbam", "student")]
    groups = {g.expertise: g for g in by_expertise(experts + novices + few, MODELS)}
    assert set(groups) == {"expert", "not given", "student"}
    assert groups["expert"].ranking.strengths[0].model == "cbam"
    assert groups["not given"].ranking.strengths[-1].model == "cbam"
    assert groups["expert"].participants == 20 and groups["expert"].votes == len(experts)
    assert groups["student"].ranking is None and "cannot rank yet" in groups["student"].note
    assert len(groups["student"].pairs) == 12


# ------------------------------------------------------------------------------------- power


def test_participants_needed_shrinks_as_the_effect_grows():
    votes = simulate(np.random.default_rng(9), participants=10, images=5)
    needed = [participants_needed(votes, target=t).participants_needed for t in (0.55, 0.6, 0.65, 0.7, 0.8)]
    assert all(a > b for a, b in zip(needed, needed[1:]))
    assert participants_needed(votes, power=0.9).participants_needed > needed[1]


def test_participants_needed_matches_the_textbook_formula_and_counts_votes_per_participant():
    votes = simulate(np.random.default_rng(10), strengths=np.zeros(2), models=["a", "b"], participants=8, images=25)
    plan = participants_needed(votes, target=0.6, power=0.8)
    h = 2 * math.asin(math.sqrt(0.6)) - 2 * math.asin(math.sqrt(0.5))
    textbook = math.ceil(((norm.ppf(0.975) + norm.ppf(0.8)) / h) ** 2)  # 194 independent votes
    [pair] = plan.pairs
    assert pair.votes_needed == textbook == 194
    assert pair.votes_per_participant == 25 and pair.participants == 8 == plan.participants
    assert pair.design_effect == pytest.approx(1 + 24 * pair.icc)
    assert plan.participants_needed == math.ceil(194 * pair.design_effect / 25)
    assert plan.more_needed == max(0, plan.participants_needed - 8)
    assert "60%" in plan.text() and str(plan.participants_needed) in plan.text()


def test_participants_who_differ_need_more_of_them():
    rng = np.random.default_rng(11)
    alike = participants_needed(simulate(rng, participants=30, images=10))
    differ = participants_needed(simulate(rng, participants=30, images=10, participant_sd=1.5))
    assert max(p.icc for p in differ.pairs) > 0.1 > np.mean([p.icc for p in alike.pairs])
    assert differ.participants_needed > 1.5 * alike.participants_needed
    with pytest.raises(ValueError, match="target"):
        participants_needed([], target=0.4)
    assert participants_needed([]).text() == "no decisive votes yet."  # after "Power:" in the report (once)


def test_anova_icc_on_known_cases():
    assert anova_icc([[1, 1, 1], [0, 0, 0], [1, 1, 1], [0, 0, 0]]) == pytest.approx(1.0)
    assert anova_icc([[1, 0], [1, 0], [0, 1]]) == 0.0  # within-cluster variation only
    assert anova_icc([[1]]) == 0.0
    # balanced textbook case: MSB = 2 * var(means) ... (MSB - MSW) / (MSB + (n - 1) MSW)
    clusters = [[1, 1, 0, 1], [0, 0, 1, 0], [1, 1, 1, 1]]
    means = np.mean(clusters, axis=1)
    msb = 4 * np.sum((means - np.mean(clusters)) ** 2) / 2
    msw = np.sum((np.array(clusters) - means[:, None]) ** 2) / 9
    assert anova_icc(clusters) == pytest.approx((msb - msw) / (msb + 3 * msw))
