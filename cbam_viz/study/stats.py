"""Per-vote statistics over stored votes: preference in every pair of models, position bias,
consistency, agreement with an objective score (the clustered ones and the ranking: `analysis`).

Only study trials count (catch trials are attention checks). Repeat trials only feed the consistency
check; every other figure uses first showings, so no participant counts twice for one image.
"Decisive" votes are the A/B answers.
"""
from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .config import DECISIVE_ANSWERS, DEFAULT_ANSWERS
from .records import VoteRecord
from .scheduler import MODELS, TRIAL


@dataclass(frozen=True)
class Proportion:
    """successes out of n, with a Wilson 95% interval and an exact two-sided binomial p vs 0.5
    (share, interval and p are None when n == 0)."""

    successes: int
    n: int
    share: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None

    @classmethod
    def of(cls, successes: int, n: int) -> Proportion:
        from scipy.stats import binomtest  # deferred: importing scipy.stats takes ~1 s

        if n == 0:
            return cls(0, 0, None, None, None, None)
        low, high = wilson_interval(successes, n)
        return cls(successes, n, successes / n, low, high, float(binomtest(successes, n, 0.5).pvalue))


@dataclass(frozen=True)
class GroupRow:
    """Votes of one image or participant: counts per chosen model/answer and, in a two-model study,
    the second model's share of the decisive votes."""

    key: str
    votes: int
    chosen: dict[str, int]
    share: float | None


@dataclass(frozen=True)
class PairPreference:
    """Decisive votes on trials that showed `first` and `second`: the share choosing `second`."""

    first: str
    second: str
    preference: Proportion


@dataclass(frozen=True)
class Consistency:
    """Repeated trials (sides swapped): same model chosen both times, and same letter both times."""

    pairs: int
    consistent: int
    same_letter: int

    @property
    def share(self) -> float | None:
        return self.consistent / self.pairs if self.pairs else None


@dataclass(frozen=True)
class StudyStats:
    models: tuple[str, ...]
    votes: int
    participants: int
    answer_counts: dict[str, int]
    chosen_counts: dict[str, int]
    preferences: list[PairPreference]  # every pair of models, in the study's order
    position_bias: Proportion
    per_image: list[GroupRow]
    per_participant: list[GroupRow]
    consistency: Consistency
    objective_agreement: Proportion | None


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: `cbam_viz.data.metrics.wilson_interval`, imported
    on first use (scipy.stats takes about a second to import; the app starts without it)."""
    from ..data.metrics import wilson_interval as interval

    return interval(successes, n, confidence)


def compute_stats(
    votes: Sequence[VoteRecord],
    answers: Sequence[str] = DEFAULT_ANSWERS,
    objective: Mapping[str, Mapping[str, float]] | None = None,
    models: Sequence[str] = MODELS,
) -> StudyStats:
    """All per-vote figures for a study of `models`. `objective` maps stimulus id -> {model: score}
    (e.g. energy pointing game); agreement counts decisive votes for the higher-scoring of the two
    models shown, skipping ties and stimuli without scores. Catch trials are left out."""
    models = tuple(models)
    trials = [v for v in votes if v.kind == TRIAL]
    first = [v for v in trials if not v.is_repeat]
    decisive = [v for v in first if v.answer in DECISIVE_ANSWERS]
    other_answers = [a for a in answers if a not in DECISIVE_ANSWERS]
    preferences = []
    for a, b in itertools.combinations(models, 2):
        shown = [v for v in decisive if {v.shown_as_a, v.shown_as_b} == {a, b}]
        preferences.append(PairPreference(a, b, Proportion.of(sum(v.chosen_model == b for v in shown), len(shown))))
    return StudyStats(
        models=models,
        votes=len(first),
        participants=len({v.participant_id for v in first}),
        answer_counts=_counts((v.answer for v in first), answers),
        chosen_counts=_counts((v.chosen_model for v in first), (*models, *other_answers)),
        preferences=preferences,
        position_bias=Proportion.of(sum(v.answer == "A" for v in decisive), len(decisive)),
        per_image=_groups(first, lambda v: v.stimulus_id, models, other_answers),
        per_participant=_groups(first, lambda v: v.participant_id, models, other_answers),
        consistency=_consistency(trials),
        objective_agreement=None if objective is None else _agreement(decisive, objective),
    )


def _counts(values: Iterable[str], keys: Sequence[str]) -> dict[str, int]:
    return {**{k: 0 for k in keys}, **Counter(values)}


def _groups(votes: Sequence[VoteRecord], key: Callable[[VoteRecord], str], models: tuple[str, ...],
            other_answers: Sequence[str]) -> list[GroupRow]:
    grouped: dict[str, list[VoteRecord]] = defaultdict(list)
    for vote in votes:
        grouped[key(vote)].append(vote)
    rows = []
    for name in sorted(grouped):
        chosen = _counts((v.chosen_model for v in grouped[name]), (*models, *other_answers))
        decisive = sum(chosen[m] for m in models)
        share = chosen[models[-1]] / decisive if len(models) == 2 and decisive else None
        rows.append(GroupRow(name, len(grouped[name]), chosen, share))
    return rows


def _consistency(votes: Sequence[VoteRecord]) -> Consistency:
    first = {(v.participant_id, v.stimulus_id): v for v in votes if not v.is_repeat}
    pairs = [(first[(v.participant_id, v.stimulus_id)], v) for v in votes
             if v.is_repeat and (v.participant_id, v.stimulus_id) in first]
    return Consistency(
        pairs=len(pairs),
        consistent=sum(a.chosen_model == b.chosen_model for a, b in pairs),
        same_letter=sum(a.answer == b.answer for a, b in pairs),
    )


def _agreement(decisive: Sequence[VoteRecord], objective: Mapping[str, Mapping[str, float]]) -> Proportion:
    hits = n = 0
    for vote in decisive:
        scores = objective.get(vote.stimulus_id)
        if scores is None:
            continue
        a, b = vote.shown_as_a, vote.shown_as_b
        if not {a, b} <= set(scores):
            raise ValueError(f"objective scores for {vote.stimulus_id!r} need keys {[a, b]}")
        if scores[a] == scores[b]:
            continue
        better = a if scores[a] > scores[b] else b
        n += 1
        hits += vote.chosen_model == better
    return Proportion.of(hits, n)


# --- markdown -----------------------------------------------------------------------------


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, with an "s" unless ``n`` is 1: "1 vote", "2 votes"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summary_markdown(stats: StudyStats, title: str = "Study summary", names: Mapping[str, str] | None = None,
                     position_bias: bool = True, notes: Sequence[str] = ()) -> str:
    """A Markdown report of `stats` (headline figures, then per-image and per-participant tables).
    ``names``: how each model reads (`StudyConfig.names`); ``position_bias=False`` leaves its line out
    (for a report that gives it with a clustered interval, `report.build_report`); ``notes``: Markdown
    lines under the vote count."""
    lines = [f"## {title}", "",
             f"{plural(stats.votes, 'vote')} from {plural(stats.participants, 'participant')} (repeat trials excluded).",
             *notes, "",
             "| answer | votes |", "|---|---|"]
    names = dict(names or {})
    lines += [f"| {names.get(k, k)} | {v} |" for k, v in stats.chosen_counts.items()]
    lines.append("")
    lines += [f"- **Prefers {names.get(p.second, p.second)}** (of decisive votes, vs {names.get(p.first, p.first)}): "
              f"{proportion_text(p.preference)}" for p in stats.preferences]
    if position_bias:
        lines.append(f"- **Position bias** (chose A, of decisive votes): {proportion_text(stats.position_bias)}")
    lines.append(f"- **Consistency** on repeated trials: {_consistency_text(stats.consistency)}")
    if stats.objective_agreement is not None:
        lines.append(f"- **Agrees with the objective score**: {proportion_text(stats.objective_agreement)}")
    for heading, rows in (("Per image", stats.per_image), ("Per participant", stats.per_participant)):
        lines += ["", f"### {heading}", "", _group_table(rows, stats.models, names)]
    return "\n".join(lines) + "\n"


def proportion_text(p: Proportion) -> str:
    """"7/10 = 70.0% (95% CI ..., binomial p = ...)", or "no decisive votes yet"."""
    if p.n == 0:
        return "no decisive votes yet"
    return (f"{p.successes}/{p.n} = {p.share:.1%} (95% CI {p.ci_low:.1%}–{p.ci_high:.1%}, "
            f"binomial p = {p.p_value:.3g})")


def _consistency_text(c: Consistency) -> str:
    if c.pairs == 0:
        return "no repeated trials answered"
    return f"{c.consistent}/{c.pairs} = {c.share:.1%} chose the same model ({c.same_letter} the same letter)"


def share_title(models: Sequence[str], names: Mapping[str, str]) -> str | None:
    """The heading of a group's share column ("CBAM share"); None beyond two models (no single share)."""
    return f"{names.get(models[-1], models[-1])} share" if len(models) == 2 else None


def _group_table(rows: Sequence[GroupRow], models: Sequence[str], names: Mapping[str, str]) -> str:
    if not rows:
        return "_no votes_"
    columns = list(dict.fromkeys(k for row in rows for k in row.chosen))
    share = share_title(models, names)
    lines = ["| id | votes | " + " | ".join(names.get(c, c) for c in columns) + (f" | {share} |" if share else " |"),
             "|---|---|" + "---|" * (len(columns) + bool(share))]
    for row in rows:
        cells = [row.key, str(row.votes), *(str(row.chosen.get(c, 0)) for c in columns)]
        if share:
            cells.append("–" if row.share is None else f"{row.share:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
