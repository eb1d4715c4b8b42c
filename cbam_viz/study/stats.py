"""Statistics over stored votes: preference for CBAM, position bias, consistency, agreement.

Repeat trials only feed the consistency check; every other figure uses first showings, so no
participant counts twice for one image. "Decisive" votes are the A/B answers.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .config import DECISIVE_ANSWERS, DEFAULT_ANSWERS
from .scheduler import BASELINE, CBAM, MODELS
from .records import VoteRecord


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
    """Votes of one image or participant: counts per chosen model/answer, CBAM share of decisive."""

    key: str
    votes: int
    chosen: dict[str, int]
    cbam_share: float | None


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
    votes: int
    participants: int
    answer_counts: dict[str, int]
    chosen_counts: dict[str, int]
    cbam_preference: Proportion
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
) -> StudyStats:
    """All figures for a study. `objective` maps stimulus id -> {"baseline": score, "cbam": score}
    (e.g. energy pointing game); agreement counts decisive votes for the higher-scoring model,
    skipping ties and stimuli without scores."""
    first = [v for v in votes if not v.is_repeat]
    decisive = [v for v in first if v.answer in DECISIVE_ANSWERS]
    other_answers = [a for a in answers if a not in DECISIVE_ANSWERS]
    return StudyStats(
        votes=len(first),
        participants=len({v.participant_id for v in first}),
        answer_counts=_counts((v.answer for v in first), answers),
        chosen_counts=_counts((v.chosen_model for v in first), (*MODELS, *other_answers)),
        cbam_preference=Proportion.of(sum(v.chosen_model == CBAM for v in decisive), len(decisive)),
        position_bias=Proportion.of(sum(v.answer == "A" for v in decisive), len(decisive)),
        per_image=_groups(first, lambda v: v.stimulus_id, other_answers),
        per_participant=_groups(first, lambda v: v.participant_id, other_answers),
        consistency=_consistency(votes),
        objective_agreement=None if objective is None else _agreement(decisive, objective),
    )


def _counts(values: Iterable[str], keys: Sequence[str]) -> dict[str, int]:
    return {**{k: 0 for k in keys}, **Counter(values)}


def _groups(
    votes: Sequence[VoteRecord], key: Callable[[VoteRecord], str], other_answers: Sequence[str]
) -> list[GroupRow]:
    grouped: dict[str, list[VoteRecord]] = defaultdict(list)
    for vote in votes:
        grouped[key(vote)].append(vote)
    rows = []
    for name in sorted(grouped):
        chosen = _counts((v.chosen_model for v in grouped[name]), (*MODELS, *other_answers))
        decisive = chosen[BASELINE] + chosen[CBAM]
        rows.append(GroupRow(name, len(grouped[name]), chosen, chosen[CBAM] / decisive if decisive else None))
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
        if not set(MODELS) <= set(scores):
            raise ValueError(f"objective scores for {vote.stimulus_id!r} need keys {list(MODELS)}")
        if scores[BASELINE] == scores[CBAM]:
            continue
        better = CBAM if scores[CBAM] > scores[BASELINE] else BASELINE
        n += 1
        hits += vote.chosen_model == better
    return Proportion.of(hits, n)


# --- markdown -----------------------------------------------------------------------------


def summary_markdown(stats: StudyStats, title: str = "Study summary", names: Mapping[str, str] | None = None) -> str:
    """A Markdown report of `stats` (headline figures, then per-image and per-participant tables).
    ``names``: what the "baseline" and "cbam" slots stand for (`StudyConfig.names`)."""
    lines = [f"## {title}", "",
             f"{stats.votes} votes from {stats.participants} participants (repeat trials excluded).", "",
             "| answer | votes |", "|---|---|"]
    names = {BASELINE: "baseline", CBAM: "CBAM", **(names or {})}
    lines += [f"| {names.get(k, k)} | {v} |" for k, v in stats.chosen_counts.items()]
    lines += ["",
              f"- **Prefers {names[CBAM]}** (of decisive votes, vs {names[BASELINE]}): "
              f"{_proportion(stats.cbam_preference)}",
              f"- **Position bias** (chose A, of decisive votes): {_proportion(stats.position_bias)}",
              f"- **Consistency** on repeated trials: {_consistency_text(stats.consistency)}"]
    if stats.objective_agreement is not None:
        lines.append(f"- **Agrees with the objective score**: {_proportion(stats.objective_agreement)}")
    for heading, rows in (("Per image", stats.per_image), ("Per participant", stats.per_participant)):
        lines += ["", f"### {heading}", "", _group_table(rows, names)]
    return "\n".join(lines) + "\n"


def _proportion(p: Proportion) -> str:
    if p.n == 0:
        return "no decisive votes yet"
    return (f"{p.successes}/{p.n} = {p.share:.1%} (95% CI {p.ci_low:.1%}–{p.ci_high:.1%}, "
            f"binomial p = {p.p_value:.3g})")


def _consistency_text(c: Consistency) -> str:
    if c.pairs == 0:
        return "no repeated trials answered"
    return f"{c.consistent}/{c.pairs} = {c.share:.1%} chose the same model ({c.same_letter} the same letter)"


def _group_table(rows: Sequence[GroupRow], names: Mapping[str, str]) -> str:
    if not rows:
        return "_no votes_"
    columns = list(dict.fromkeys(k for row in rows for k in row.chosen))
    lines = ["| id | votes | " + " | ".join(names.get(c, c) for c in columns) + f" | {names[CBAM]} share |",
             "|---|---|" + "---|" * len(columns) + "---|"]
    for row in rows:
        share = "–" if row.cbam_share is None else f"{row.cbam_share:.0%}"
        counts = " | ".join(str(row.chosen.get(c, 0)) for c in columns)
        lines.append(f"| {row.key} | {row.votes} | {counts} | {share} |")
    return "\n".join(lines)
